//! `httpd`: a static web server for the shared folder. HTTP/1.1 (and 1.0) with
//! keep-alive, GET and HEAD, ranges and conditional requests. Connections live on the
//! net core, where `server` answers what its cache holds; worker threads on the
//! application cores answer the rest from the fs service (`worker`). The parts that
//! decide what to send are plain logic tested on the host; `service` ties them to the
//! net and fs services.

mod cache;
mod content_type;
mod date;
mod options;
mod path;
mod request;
mod response;
mod server;
mod service;
mod validators;
mod worker;

use manada::App;

pub(crate) const APP: App = App {
    name: "httpd",
    summary: "static web server for the share on port 80 (port=N); runs until stopped",
    main: service::main,
};
