//! What the pages show and how: the templates and the frame of every page
//! ([`templates`]), the cards and the pump page as plain data ([`pages`]), a
//! card as HTML without the template engine, for the overview ([`card`]), a
//! pump's daily energy, COP and compressor charts ([`efficiency`]), the
//! settings and login forms ([`settings_page`]), the heat pump list and
//! forms ([`heatpumps_page`]), and the helpers they share
//! ([`format`](mod@format), [`sparkline`], the HTML escaping of [`escape`],
//! natural sort). Views read
//! [`App`](super::App) and return HTML; they know nothing of routes or request
//! extractors.

pub mod card;
pub mod efficiency;
pub mod escape;
pub mod format;
pub mod heatpumps_page;
pub mod pages;
pub mod settings_page;
pub mod sparkline;
pub mod templates;
