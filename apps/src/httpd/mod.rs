//! `httpd`: a static web server for the shared folder. HTTP/1.1 (and 1.0) with
//! keep-alive, GET and HEAD, files streamed from the fs service, worker threads on the
//! application cores. The parts that decide what to send are plain logic tested on the
//! host; `service` ties them to the net and fs services.

mod connection;
mod content_type;
mod options;
mod path;
mod request;
mod response;
mod service;

use crate::app::App;

pub(crate) const APP: App = App {
    name: "httpd",
    summary: "static web server for the share on port 80 (port=N); runs until stopped",
    main: service::main,
};
