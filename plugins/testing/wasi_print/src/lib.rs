//! `wasi_print`: a plain `wasm32-wasip1` component that prints to stdout and
//! stderr, and tries what a deny-by-default WASI must refuse.

use stevedore_sdk::{Category, Error};

/// The category.
pub struct WasiPrint;

impl Category for WasiPrint {
    const NAME: &'static str = "wasi_print";
    const SUMMARY: &'static str = "Print through WASI";
    type Params = stevedore_sdk::AnyParams;
    fn validate(_: &stevedore_sdk::AnyParams) -> Result<(), Error> {
        Ok(())
    }
    fn run(_: stevedore_sdk::AnyParams) -> Result<Option<String>, Error> {
        println!("hello from wasi stdout");
        eprintln!("hello from wasi stderr");
        let file = std::fs::read("/etc/passwd").is_ok();
        let env = std::env::vars().count();
        let net = std::net::TcpStream::connect("127.0.0.1:1").is_ok();
        Ok(Some(format!(
            "file readable: {file}, env vars: {env}, network: {net}"
        )))
    }
}

stevedore_sdk::category!(WasiPrint);
