//! Finds where things are in a register-map file, for diagnostics.
//!
//! serde_yaml 0.9 keeps no positions for values, so this reads the text's
//! indentation the way HPManager-style block YAML is written: `models:`, one
//! key per model, `registers:` with `- name: …` items. Flow-style YAML is
//! still loaded correctly; its diagnostics just point at a coarser place.

/// Byte offsets of models, their keys, blocks and register items.
use crate::yaml::{key_of, lines, Line};

#[derive(Debug, Default)]
pub(crate) struct Locator {
    models: Vec<ModelLoc>,
}

#[derive(Debug)]
struct ModelLoc {
    name: String,
    at: usize,
    keys: Vec<(String, usize)>,
    blocks: Vec<(String, usize)>,
    registers: Vec<Item>,
}

#[derive(Debug)]
struct Item {
    at: usize,
    keys: Vec<(String, usize)>,
}

/// The text after a sequence dash and the offset it starts at.
fn after_dash<'a>(line: &Line<'a>) -> Option<(usize, &'a str)> {
    let rest = line.content.strip_prefix('-')?;
    if !(rest.is_empty() || rest.starts_with(' ')) {
        return None;
    }
    let trimmed = rest.trim_start_matches(' ');
    Some((line.at + (line.content.len() - trimmed.len()), trimmed))
}

impl Locator {
    pub(crate) fn new(text: &str) -> Locator {
        let lines = lines(text);
        let Some(start) = lines
            .iter()
            .position(|l| key_of(l.content).as_deref() == Some("models"))
        else {
            return Locator::default();
        };
        let base = lines[start].indent;
        let body: Vec<Line<'_>> = lines[start + 1..]
            .iter()
            .take_while(|l| l.indent > base)
            .copied()
            .collect();
        let Some(model_indent) = body.first().map(|l| l.indent) else {
            return Locator::default();
        };
        let mut models = Vec::new();
        let mut i = 0;
        while i < body.len() {
            let head = body[i];
            let end = body[i + 1..]
                .iter()
                .position(|l| l.indent <= model_indent)
                .map_or(body.len(), |p| i + 1 + p);
            if head.indent == model_indent {
                if let Some(name) = key_of(head.content) {
                    models.push(model_loc(name, head.at, &body[i + 1..end]));
                }
            }
            i = end;
        }
        Locator { models }
    }

    fn find(&self, model: &str) -> Option<&ModelLoc> {
        self.models.iter().find(|m| m.name == model)
    }

    pub(crate) fn model(&self, model: &str) -> Option<usize> {
        self.find(model).map(|m| m.at)
    }

    pub(crate) fn model_key(&self, model: &str, key: &str) -> Option<usize> {
        let m = self.find(model)?;
        m.keys.iter().find(|(k, _)| k == key).map(|(_, at)| *at)
    }

    pub(crate) fn block(&self, model: &str, block: &str) -> Option<usize> {
        let m = self.find(model)?;
        m.blocks.iter().find(|(k, _)| k == block).map(|(_, at)| *at)
    }

    pub(crate) fn register(&self, model: &str, index: usize) -> Option<usize> {
        self.find(model)?.registers.get(index).map(|r| r.at)
    }

    pub(crate) fn register_key(&self, model: &str, index: usize, key: &str) -> Option<usize> {
        let item = self.find(model)?.registers.get(index)?;
        item.keys.iter().find(|(k, _)| k == key).map(|(_, at)| *at)
    }
}

fn model_loc(name: String, at: usize, body: &[Line<'_>]) -> ModelLoc {
    let mut loc = ModelLoc {
        name,
        at,
        keys: Vec::new(),
        blocks: Vec::new(),
        registers: Vec::new(),
    };
    let Some(key_indent) = body.first().map(|l| l.indent) else {
        return loc;
    };
    let mut i = 0;
    while i < body.len() {
        let head = body[i];
        // A block sequence may sit at its key's own indent (`registers:\n- name: x`).
        let end = body[i + 1..]
            .iter()
            .position(|l| l.indent < key_indent || (l.indent == key_indent && after_dash(l).is_none()))
            .map_or(body.len(), |p| i + 1 + p);
        if head.indent == key_indent {
            if let Some(key) = key_of(head.content) {
                let children = &body[i + 1..end];
                match key.as_str() {
                    "registers" => loc.registers = items(children),
                    "blocks" => loc.blocks = keys_at_first_indent(children),
                    _ => {}
                }
                loc.keys.push((key, head.at));
            }
        }
        i = end;
    }
    loc
}

fn keys_at_first_indent(lines: &[Line<'_>]) -> Vec<(String, usize)> {
    let Some(indent) = lines.first().map(|l| l.indent) else {
        return Vec::new();
    };
    lines
        .iter()
        .filter(|l| l.indent == indent)
        .filter_map(|l| key_of(l.content).map(|k| (k, l.at)))
        .collect()
}

fn items(lines: &[Line<'_>]) -> Vec<Item> {
    let Some(dash_indent) = lines.iter().find(|l| after_dash(l).is_some()).map(|l| l.indent) else {
        return Vec::new();
    };
    let mut out: Vec<Item> = Vec::new();
    let mut key_indent = None;
    for l in lines {
        if l.indent == dash_indent {
            if let Some((at, rest)) = after_dash(l) {
                let mut keys = Vec::new();
                if let Some(k) = key_of(rest) {
                    keys.push((k, at));
                }
                key_indent = Some(dash_indent + (at - l.at));
                out.push(Item { at: l.at, keys });
                continue;
            }
        }
        if Some(l.indent) == key_indent {
            if let (Some(item), Some(k)) = (out.last_mut(), key_of(l.content)) {
                item.keys.push((k, l.at));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# comment\nmodels:\n  m1:\n    description: x\n    blocks:\n      vent: {optional: true}\n    registers:\n      # first\n      - name: a\n        address: 1\n        enum_values:\n          0: off\n\n      - address: 2\n        name: \"b\"\n  m2:\n    registers:\n    - name: c\n      data_type: int17\n";

    fn line_of(offset: usize) -> usize {
        TEXT[..offset].matches('\n').count() + 1
    }

    #[test]
    fn finds_models_registers_and_their_keys() {
        let loc = Locator::new(TEXT);
        assert_eq!(loc.model("m1").map(line_of), Some(3));
        assert_eq!(loc.model_key("m1", "description").map(line_of), Some(4));
        assert_eq!(loc.block("m1", "vent").map(line_of), Some(6));
        assert_eq!(loc.register("m1", 0).map(line_of), Some(9));
        assert_eq!(loc.register_key("m1", 0, "address").map(line_of), Some(10));
        assert_eq!(loc.register("m1", 1).map(line_of), Some(14));
        assert_eq!(loc.register_key("m1", 1, "name").map(line_of), Some(15));
        assert_eq!(loc.register_key("m1", 0, "0"), None);
        assert_eq!(loc.register_key("m2", 0, "data_type").map(line_of), Some(19));
        assert_eq!(loc.register("m2", 1), None);
    }

    #[test]
    fn odd_text_finds_nothing_and_does_not_panic() {
        for text in [
            "",
            "models:",
            "models: {a: {registers: []}}",
            "- x",
            ":\n  :\n",
            "models:\n  \"m\n",
            "models:\n  m:\n    registers:\n    -\n",
        ] {
            let loc = Locator::new(text);
            let _ = loc.register("m", 0);
        }
    }
}
