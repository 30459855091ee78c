//! Loading `registers.yml` into [`Model`]s. The format is described in the
//! module docs of `registers`; this file checks it and reports every problem
//! of the file at once, each at the line of the register (or key) at fault.

use std::cell::OnceCell;
use std::collections::HashMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use indexmap::IndexMap;
use serde_yaml::{Mapping, Value as Yaml};

use crate::diagnostic::{Diagnostic, SourceText};
use crate::yaml::syntax_error;

use super::locate::Locator;
use super::model::{Block, ByteOrder, Model, Register, Table};
use super::yaml::{boolean, check_name, integer_list, kind, text};

/// Every model of one register-map file.
#[derive(Debug, Clone)]
pub struct RegisterMap {
    path: PathBuf,
    models: IndexMap<String, Arc<Model>>,
}

impl RegisterMap {
    /// Reads and compiles a register map.
    pub fn load(path: impl AsRef<Path>) -> Result<RegisterMap, Vec<Diagnostic>> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![Diagnostic::file_error(path, format!("cannot read register map: {e}"))])?;
        RegisterMap::parse(path, &text)
    }

    /// As [`load`](Self::load), shared: while a map compiled from the same
    /// path and the same bytes is still held (by another component of the
    /// pipeline being checked), that one is returned instead of compiling the
    /// text again. A pipeline's Modbus source and its dashboard name the same
    /// file, and compiling the shipped map is most of hpflow's start-up.
    pub fn load_shared(path: impl AsRef<Path>) -> Result<Arc<RegisterMap>, Vec<Diagnostic>> {
        /// Maps alive somewhere, by path and text.
        static LOADED: Mutex<Vec<(PathBuf, String, Weak<RegisterMap>)>> = Mutex::new(Vec::new());
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![Diagnostic::file_error(path, format!("cannot read register map: {e}"))])?;
        {
            let mut loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
            loaded.retain(|(_, _, map)| map.strong_count() > 0);
            let alive = loaded
                .iter()
                .filter(|(p, t, _)| p == path && *t == text)
                .find_map(|(_, _, map)| map.upgrade());
            if let Some(map) = alive {
                return Ok(map);
            }
        }
        let map = Arc::new(RegisterMap::parse(path, &text)?);
        LOADED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((path.to_path_buf(), text, Arc::downgrade(&map)));
        Ok(map)
    }

    /// Compiles a register map from its text; `path` is only used in diagnostics.
    pub fn parse(path: impl AsRef<Path>, text: &str) -> Result<RegisterMap, Vec<Diagnostic>> {
        let src = SourceText::new(path.as_ref(), text);
        let mut doc: Yaml = crate::yaml::parse(text).map_err(|e| vec![syntax_error(&src.path, &e)])?;
        doc.apply_merge().map_err(|e| vec![syntax_error(&src.path, &e)])?;
        let mut c = Compiler {
            src: &src,
            text,
            locator: OnceCell::new(),
            errors: Vec::new(),
        };
        let models = c.document(&doc);
        if c.errors.is_empty() {
            Ok(RegisterMap {
                path: src.path.clone(),
                models,
            })
        } else {
            let mut errors = c.errors;
            errors.sort_by_key(|d| (d.line, d.column));
            Err(errors)
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model(&self, name: &str) -> Option<&Arc<Model>> {
        self.models.get(name)
    }

    /// The models in file order.
    pub fn models(&self) -> impl Iterator<Item = &Arc<Model>> {
        self.models.values()
    }

    /// What a device naming a model the map does not have is told.
    pub fn unknown_model(&self, model: &str) -> String {
        let known: Vec<&str> = self.models().map(|m| m.name()).collect();
        format!(
            "unknown model `{model}`; the register map has: {}",
            if known.is_empty() {
                "(no models)".to_string()
            } else {
                known.join(", ")
            }
        )
    }
}

const MODEL_KEYS: &str = "description, manufacturer, byte_order, not_available, blocks, registers";
const BLOCK_KEYS: &str = "optional, description";

/// One pass over a document, collecting every diagnostic on the way.
struct Compiler<'a> {
    src: &'a SourceText,
    text: &'a str,
    /// Where things are in the text: only a map with errors needs it.
    locator: OnceCell<Locator>,
    errors: Vec<Diagnostic>,
}

/// Model-level settings every register inherits.
struct Defaults {
    byte_order: ByteOrder,
    not_available: Vec<i128>,
    blocks: Vec<Block>,
}

/// Where a register sits, for messages.
struct RegAt<'a> {
    model: &'a str,
    index: usize,
    label: String,
}

impl Compiler<'_> {
    fn loc(&self) -> &Locator {
        self.locator.get_or_init(|| Locator::new(self.text))
    }

    fn error(&mut self, at: Option<usize>, message: String) {
        let at = at.map(|o| o..o);
        self.errors.push(Diagnostic::error(self.src, at, message));
    }

    fn reg_error(&mut self, r: &RegAt<'_>, key: Option<&str>, message: impl Display) {
        let at = key
            .and_then(|k| self.loc().register_key(r.model, r.index, k))
            .or_else(|| self.loc().register(r.model, r.index))
            .or_else(|| self.loc().model(r.model));
        self.error(at, format!("{} of model `{}`: {message}", r.label, r.model));
    }

    fn model_error(&mut self, model: &str, key: Option<&str>, message: impl Display) {
        let at = key
            .and_then(|k| self.loc().model_key(model, k))
            .or_else(|| self.loc().model(model));
        self.error(at, format!("model `{model}`: {message}"));
    }

    fn document(&mut self, doc: &Yaml) -> IndexMap<String, Arc<Model>> {
        let mut out = IndexMap::new();
        let Some(top) = doc.as_mapping() else {
            let found = kind(doc);
            self.error(
                None,
                format!("a register map is a mapping with a `models:` key, found {found}"),
            );
            return out;
        };
        let mut models = None;
        for (k, v) in top {
            match k.as_str() {
                Some("models") => models = Some(v),
                _ => {
                    let key = text(k).unwrap_or_else(|_| kind(k).to_string());
                    self.error(
                        None,
                        format!("unknown top-level key `{key}`; a register map only has `models`"),
                    );
                }
            }
        }
        let Some(models) = models else {
            self.error(None, "the register map has no `models:` key".into());
            return out;
        };
        let Some(models) = models.as_mapping().filter(|m| !m.is_empty()) else {
            let found = kind(models);
            self.error(None, format!("`models` must map model names to models, found {found}"));
            return out;
        };
        for (k, v) in models {
            let Ok(name) = text(k) else {
                self.error(None, format!("model names must be text, found {}", kind(k)));
                continue;
            };
            if let Some(model) = self.model(&name, v) {
                out.insert(name, Arc::new(model));
            }
        }
        out
    }

    fn model(&mut self, name: &str, v: &Yaml) -> Option<Model> {
        let Some(map) = v.as_mapping() else {
            self.model_error(
                name,
                None,
                format!("expected a mapping with `registers`, found {}", kind(v)),
            );
            return None;
        };
        let before = self.errors.len();
        let mut description = None;
        let mut manufacturer = None;
        let mut defaults = Defaults {
            byte_order: ByteOrder::Abcd,
            not_available: Vec::new(),
            blocks: Vec::new(),
        };
        let mut registers = None;
        for (k, v) in map {
            let key = k.as_str().unwrap_or("");
            let result = match key {
                "description" => text(v).map(|s| description = Some(s)),
                "manufacturer" => text(v).and_then(|s| {
                    if s.trim().is_empty() {
                        Err("`manufacturer` is empty".to_string())
                    } else {
                        manufacturer = Some(s);
                        Ok(())
                    }
                }),
                "byte_order" => byte_order(v).map(|o| defaults.byte_order = o),
                "not_available" => integer_list(v).map(|l| defaults.not_available = l),
                "blocks" => {
                    defaults.blocks = self.blocks(name, v);
                    Ok(())
                }
                "registers" => match v {
                    Yaml::Sequence(items) if !items.is_empty() => {
                        registers = Some(items);
                        Ok(())
                    }
                    Yaml::Sequence(_) => Err("`registers` is empty".to_string()),
                    other => Err(format!("`registers` must be a list, found {}", kind(other))),
                },
                _ => Err(format!(
                    "unknown key `{}`; expected one of {MODEL_KEYS}",
                    text(k).unwrap_or_default()
                )),
            };
            if let Err(message) = result {
                self.model_error(name, Some(key), message);
            }
        }
        let Some(items) = registers else {
            if !map.contains_key("registers") {
                self.model_error(name, None, "has no `registers` list");
            }
            return None;
        };
        let mut compiled = Vec::new();
        for (index, item) in items.iter().enumerate() {
            if let Some(r) = self.register(name, index, item, &defaults) {
                compiled.push((index, r));
            }
        }
        self.check_names(name, &compiled);
        self.check_overlaps(name, &compiled);
        if self.errors.len() > before {
            return None;
        }
        let registers = compiled.into_iter().map(|(_, r)| r).collect();
        let mut model = Model::new(name, description, registers, defaults.blocks);
        if let Some(m) = manufacturer {
            model.set_manufacturer(m);
        }
        Some(model)
    }

    fn blocks(&mut self, model: &str, v: &Yaml) -> Vec<Block> {
        let mut out = Vec::new();
        let Some(map) = v.as_mapping() else {
            self.model_error(
                model,
                Some("blocks"),
                format!("`blocks` must map block names to settings, found {}", kind(v)),
            );
            return out;
        };
        for (k, settings) in map {
            let name = text(k).unwrap_or_default();
            if let Err(message) = check_name(&name) {
                self.error(
                    self.block_at(model, &name),
                    format!("block of model `{model}`: {message}"),
                );
                continue;
            }
            let mut block = Block {
                name: name.as_str().into(),
                optional: false,
                description: None,
            };
            let empty = Mapping::new();
            let settings = match settings {
                Yaml::Null => &empty,
                Yaml::Mapping(m) => m,
                other => {
                    self.error(
                        self.block_at(model, &name),
                        format!(
                            "block `{name}` of model `{model}`: expected a mapping, found {}",
                            kind(other)
                        ),
                    );
                    continue;
                }
            };
            for (k, v) in settings {
                let result = match k.as_str().unwrap_or("") {
                    "optional" => boolean(v).map(|b| block.optional = b),
                    "description" => text(v).map(|s| block.description = Some(s)),
                    _ => Err(format!(
                        "unknown key `{}`; expected one of {BLOCK_KEYS}",
                        text(k).unwrap_or_default()
                    )),
                };
                if let Err(message) = result {
                    let at = self.block_at(model, &name);
                    self.error(at, format!("block `{name}` of model `{model}`: {message}"));
                }
            }
            out.push(block);
        }
        out
    }

    fn block_at(&self, model: &str, name: &str) -> Option<usize> {
        let loc = self.loc();
        loc.block(model, name).or_else(|| loc.model_key(model, "blocks"))
    }

    fn line_of_register(&self, model: &str, index: usize) -> String {
        self.loc()
            .register(model, index)
            .map(|o| format!(" (line {})", self.src.line_column(o).0))
            .unwrap_or_default()
    }

    /// Field names are what sinks key on, so each may come from one register only.
    fn check_names(&mut self, model: &str, regs: &[(usize, Register)]) {
        let mut owner: HashMap<Arc<str>, (usize, Arc<str>)> = HashMap::new();
        for (index, reg) in regs {
            let mut names: Vec<&Arc<str>> = reg.bits.iter().map(|b| &b.name).collect();
            if reg.emits_raw {
                names.insert(0, &reg.name);
            }
            for field in names {
                if let Some((other_index, other)) = owner.get(field) {
                    let line = self.line_of_register(model, *other_index);
                    let what = if *field == reg.name {
                        "name"
                    } else {
                        "bitmap field name"
                    };
                    let r = RegAt {
                        model,
                        index: *index,
                        label: format!("register `{}`", reg.name),
                    };
                    self.reg_error(
                        &r,
                        Some("name"),
                        format!("{what} `{field}` is already used by register `{other}`{line}"),
                    );
                } else {
                    owner.insert(field.clone(), (*index, reg.name.clone()));
                }
            }
        }
    }

    /// Two values may read exactly the same registers (a word as uint8_high and
    /// uint8_low, or under two names), but a value straddling part of another
    /// is almost always a wrong address.
    fn check_overlaps(&mut self, model: &str, regs: &[(usize, Register)]) {
        let mut spans: Vec<(Table, u32, u32, usize)> = Vec::new();
        for (i, (_, reg)) in regs.iter().enumerate() {
            if reg.parts.is_empty() {
                spans.push((reg.table, u32::from(reg.address), reg.end(), i));
            } else {
                spans.extend(
                    reg.parts
                        .iter()
                        .map(|p| (reg.table, u32::from(p.address), u32::from(p.address) + 1, i)),
                );
            }
        }
        spans.sort();
        let mut active: Vec<(Table, u32, u32, usize)> = Vec::new();
        let mut reported = Vec::new();
        for s in spans {
            active.retain(|a| a.0 == s.0 && a.2 > s.1);
            for a in &active {
                let partial = (a.1, a.2) != (s.1, s.2);
                let pair = (a.3.min(s.3), a.3.max(s.3));
                if partial && a.3 != s.3 && !reported.contains(&pair) {
                    reported.push(pair);
                    let (first, later) = (&regs[pair.0], &regs[pair.1]);
                    let r = RegAt {
                        model,
                        index: later.0,
                        label: format!("register `{}`", later.1.name),
                    };
                    let line = self.line_of_register(model, first.0);
                    self.reg_error(
                        &r,
                        Some("address"),
                        format!(
                            "{} overlaps register `{}` ({}){line}; values may share exactly the same registers, not part of them",
                            later.1.source(),
                            first.1.name,
                            first.1.source()
                        ),
                    );
                }
            }
            active.push(s);
        }
    }
}

fn byte_order(v: &Yaml) -> Result<ByteOrder, String> {
    let s = text(v)?;
    ByteOrder::parse(&s).ok_or_else(|| format!("unknown byte_order `{s}`; expected ABCD, DCBA, BADC or CDAB"))
}

mod register;

#[cfg(test)]
mod tests;
