//! What the pages show and how: the templates and the frame of every page
//! ([`templates`]), the cards and the pump page as plain data ([`pages`]), the
//! settings and login forms ([`settings_page`]), and the helpers they share
//! ([`format`](mod@format), [`sparkline`], natural sort). Views read
//! [`App`](super::App) and return HTML; they know nothing of routes or request
//! extractors.

pub mod format;
pub mod pages;
pub mod settings_page;
pub mod sparkline;
pub mod templates;
