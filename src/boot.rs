//! `rustlive boot`: the stages in order, with the failure policy applied to the first error.

use crate::cli::BootArgs;
use crate::error::Error;

pub fn run(args: &BootArgs) -> Result<(), Error> {
    let cfg = args.cmdline.load()?;
    crate::log::init(crate::log::Target::Auto, cfg.debug);
    for w in &cfg.warnings {
        log::warn!("{w}");
    }
    let Some(image) = &cfg.image else {
        log::info!("no image source on the kernel command line (root=live:URL or rd.rustlive.url); nothing to do");
        return Ok(());
    };
    let _ = image;
    Ok(())
}
