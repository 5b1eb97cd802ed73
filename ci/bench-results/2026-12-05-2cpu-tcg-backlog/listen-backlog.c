#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>
/* Diagnostic only: raise listen(2) backlogs below 128 to 128. */
int listen(int fd, int backlog) {
    static int (*real)(int, int);
    if (!real) real = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
    return real(fd, backlog < 128 ? 128 : backlog);
}
