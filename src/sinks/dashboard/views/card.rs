//! A pump's card as HTML, written straight into a string: the overview's hot
//! path. Rendering the `card` macro of `macros.html` through minijinja cost
//! as much as building the card (issue 16's profile), and the overview renders
//! one card per pump and second.
//!
//! The output is byte for byte what the macro gives (the pump page still
//! renders the macro); `tests` compares the two over random cards. Change
//! both together. Every text is escaped as the templates' formatter does.

use super::escape::escape_into;
use super::pages::{Card, Spark};

/// Appends the pieces in order: `(true, text)` escaped, `(false, markup)` as is.
fn put(out: &mut String, pieces: &[(bool, &str)]) {
    for &(text, s) in pieces {
        if text {
            escape_into(out, s);
        } else {
            out.push_str(s);
        }
    }
}

/// A template `{% if x %}`: an empty text is false.
fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Appends the card as the `card` macro renders it; `link` makes the name a
/// link to the pump's page.
pub fn write_card(out: &mut String, c: &Card, link: bool) {
    out.push_str("<article class=\"card");
    if !c.online {
        out.push_str(" offline");
    }
    let fault = given(&c.fault);
    if fault.is_some() {
        out.push_str(" faulty");
    }
    put(
        out,
        &[(false, "\" id=\"pump-"), (true, &c.id), (false, "\">\n<header>\n<h2>")],
    );
    if link {
        put(
            out,
            &[
                (false, "<a href=\""),
                (true, &c.href),
                (false, "\">"),
                (true, &c.name),
                (false, "</a>"),
            ],
        );
    } else {
        escape_into(out, &c.name);
    }
    out.push_str("</h2>\n<p class=\"meta\">");
    if let Some(location) = given(&c.location) {
        put(out, &[(true, location), (false, " · ")]);
    }
    put(
        out,
        &[
            (true, &c.model),
            (
                false,
                "</p>\n<p class=\"conn\"><span class=\"dot\" aria-hidden=\"true\"></span><b>",
            ),
            (false, if c.online { "online" } else { "offline" }),
            (false, "</b> · <time datetime=\""),
            (true, &c.last_poll),
            (false, "\">"),
            (true, &c.age),
            (false, "</time></p>\n</header>\n"),
        ],
    );
    if let Some(fault) = fault {
        put(
            out,
            &[
                (false, "<p class=\"fault\" role=\"alert\">"),
                (true, fault),
                (false, "</p>\n"),
            ],
        );
    }
    if let Some(mode) = given(&c.mode) {
        put(out, &[(false, "<p class=\"mode\">"), (true, mode), (false, "</p>\n")]);
    }
    if !c.today.is_empty() {
        out.push_str("<p class=\"today\"><span>Today</span>");
        for f in &c.today {
            put(
                out,
                &[
                    (false, " <span class=\"fig\" data-field=\""),
                    (true, f.field),
                    (false, "\">"),
                    (true, f.label),
                    (false, " <b>"),
                    (true, &f.value),
                    (false, "</b>"),
                ],
            );
            if !f.unit.is_empty() {
                put(out, &[(false, " <small>"), (true, f.unit), (false, "</small>")]);
            }
            out.push_str("</span>");
        }
        put(
            out,
            &[
                (false, " <a href=\""),
                (true, &c.href),
                (false, "/efficiency\">Efficiency</a></p>\n"),
            ],
        );
    }
    if !c.states.is_empty() {
        out.push_str("<ul class=\"states\">\n");
        for s in &c.states {
            put(
                out,
                &[
                    (false, "<li class=\""),
                    (true, s.class),
                    (false, "\" data-field=\""),
                    (true, &s.field),
                    (false, "\"><span>"),
                    (true, &s.label),
                    (false, "</span> <b>"),
                    (true, &s.value),
                    (false, "</b> <small>"),
                    (true, &s.since),
                    (false, "</small></li>\n"),
                ],
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<div class=\"tiles\">\n");
    for t in &c.tiles {
        put(
            out,
            &[
                (
                    false,
                    if t.text {
                        "<div class=\"tile text\" data-field=\""
                    } else {
                        "<div class=\"tile\" data-field=\""
                    },
                ),
                (true, &t.field),
                (false, "\">\n<span class=\"label\">"),
                (true, &t.label),
                (false, "</span>\n<span class=\"value\">"),
                (true, &t.value),
            ],
        );
        if !t.unit.is_empty() {
            put(out, &[(false, " <small>"), (true, &t.unit), (false, "</small>")]);
        }
        out.push_str("</span>\n");
        if let Some(s) = &t.spark {
            write_spark(out, s, "spark", "0 0 120 32");
            put(
                out,
                &[
                    (false, "\n<span class=\"range\">"),
                    (true, &s.min),
                    (false, " – "),
                    (true, &s.max),
                    (false, "</span>\n"),
                ],
            );
        }
        out.push_str("</div>\n");
    }
    put(
        out,
        &[
            (false, "</div>\n<p class=\"window\">Sparklines: last "),
            (true, &c.window),
            (false, "</p>\n</article>\n"),
        ],
    );
}

/// The `spark` macro: the line as an SVG of the given class and view box.
fn write_spark(out: &mut String, s: &Spark, class: &str, view_box: &str) {
    put(
        out,
        &[
            (false, "<svg class=\""),
            (true, class),
            (false, "\" viewBox=\""),
            (true, view_box),
            (false, "\" preserveAspectRatio=\"none\" aria-hidden=\"true\"><path d=\""),
            (true, &s.d),
            (false, "\"/></svg>\n"),
        ],
    );
}

#[cfg(test)]
mod tests {
    use minijinja::value::Serde;
    use minijinja::{context, Value};

    use super::*;
    use crate::modbus::Rng;
    use crate::sinks::dashboard::views::pages::{Figure, StateRow, Tile};
    use crate::sinks::dashboard::views::templates::templates;

    /// Texts a card may carry: plain, empty, markup, quotes, entities, non-ASCII.
    const TEXTS: &[&str] = &[
        "",
        "Heat pump 1",
        "<script>alert(1)</script>",
        "Cellar & <b>garage</b>",
        "\"quoted\" 'single'",
        "&amp; already",
        "Programmed operation",
        "21.5",
        "°C",
        "m³/h",
        "since 14:06",
        "x > y < z",
        "Wärmepumpe – Keller",
    ];

    fn text(r: &mut Rng) -> String {
        TEXTS[r.next_u64() as usize % TEXTS.len()].to_string()
    }

    fn maybe(r: &mut Rng) -> Option<String> {
        (!r.next_u64().is_multiple_of(3)).then(|| text(r))
    }

    fn card(r: &mut Rng) -> Card {
        let n = |r: &mut Rng, most: u64| (r.next_u64() % (most + 1)) as usize;
        let pick = |r: &mut Rng, from: &[&'static str]| from[r.next_u64() as usize % from.len()];
        Card {
            id: text(r),
            href: text(r),
            name: text(r),
            location: maybe(r),
            model: text(r),
            online: r.next_u64().is_multiple_of(2),
            age: text(r),
            last_poll: text(r),
            mode: maybe(r),
            fault: maybe(r),
            states: (0..n(r, 4))
                .map(|_| StateRow {
                    field: text(r),
                    label: text(r),
                    class: pick(r, &["on", "off", "unknown"]),
                    value: text(r),
                    since: text(r),
                })
                .collect(),
            tiles: (0..n(r, 5))
                .map(|_| Tile {
                    field: text(r),
                    label: text(r),
                    value: text(r),
                    unit: text(r),
                    text: r.next_u64().is_multiple_of(2),
                    spark: (!r.next_u64().is_multiple_of(3)).then(|| Spark {
                        d: pick(r, &["M1 30l60-14 58-14", "M61 16h0", ""]).to_string(),
                        min: text(r),
                        max: text(r),
                    }),
                })
                .collect(),
            window: text(r),
            today: (0..n(r, 3))
                .map(|_| Figure {
                    field: pick(r, &["cop_today", "heat_today_kwh", "<x>"]),
                    label: pick(r, &["COP", "Heat", "A & B"]),
                    value: text(r),
                    unit: pick(r, &["", "kWh", "\"u\""]),
                })
                .collect(),
        }
    }

    /// The card as minijinja renders the macro (the overview's former path).
    fn via_template(c: &Card, link: bool) -> String {
        templates()
            .unwrap()
            .render_str(
                "{% import \"macros.html\" as m %}{{ m.card(c, link) }}",
                context! { c => Value::from(Serde(c)), link => link },
            )
            .unwrap()
    }

    #[test]
    fn random_cards_render_byte_for_byte_as_the_template_does() {
        let mut r = Rng::new(16);
        for i in 0..400 {
            let c = card(&mut r);
            let link = i % 4 != 0;
            let mut ours = String::new();
            write_card(&mut ours, &c, link);
            assert_eq!(ours, via_template(&c, link), "card {i}: {c:?}");
        }
    }

    #[test]
    fn markup_in_any_text_comes_out_escaped() {
        let mut r = Rng::new(7);
        let mut c = card(&mut r);
        let evil = "<script>alert('x')</script>\"&";
        c.name = evil.into();
        c.location = Some(evil.into());
        c.fault = Some(evil.into());
        let mut out = String::new();
        write_card(&mut out, &c, true);
        assert!(!out.contains("<script>"), "{out}");
        assert_eq!(
            out.matches("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;")
                .count(),
            3,
            "{out}"
        );
    }
}
