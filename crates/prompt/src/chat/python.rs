//! Python-compatible output for chat templates written for `transformers` (Jinja2): a `tojson`
//! filter that formats like `json.dumps` and a formatter that prints values the way Python's `str`
//! and `repr` do, so rendered prompts equal the reference byte for byte.

use super::*;

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent, separators=separators,
/// sort_keys=sort_keys)`, which is `transformers`' `tojson`: no HTML escaping (minijinja's
/// built-in escapes `<`, `>`, `&`, `'`), `", "` and `": "` separators (`","` between items when
/// indented), map keys in insertion order unless sorted.
pub(super) fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators.as_deref() {
        None => (
            if indent.is_some() { "," } else { ", " }.to_string(),
            ": ".to_string(),
        ),
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair (item_separator, key_separator)",
            ))
        }
    };
    let style = JsonStyle {
        indent,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
        item_sep,
        key_sep,
    };
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<usize>,
    sort_keys: bool,
    ensure_ascii: bool,
    item_sep: String,
    key_sep: String,
}

fn json_string(out: &mut String, s: &str, ensure_ascii: bool) -> Result<(), Error> {
    let quoted = serde_json::to_string(s)
        .map_err(|e| Error::new(ErrorKind::BadSerialization, format!("tojson: {e}")))?;
    if !ensure_ascii {
        out.push_str(&quoted);
        return Ok(());
    }
    let mut units = [0u16; 2];
    for ch in quoted.chars() {
        if ch.is_ascii() {
            out.push(ch);
        } else {
            for unit in ch.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    Ok(())
}

fn write_json(
    out: &mut String,
    value: &Value,
    style: &JsonStyle,
    depth: usize,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            let json = serde_json::to_string(value)
                .map_err(|e| Error::new(ErrorKind::BadSerialization, format!("tojson: {e}")))?;
            out.push_str(&json);
        }
        ValueKind::String => {
            json_string(out, value.as_str().unwrap_or_default(), style.ensure_ascii)?
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, &items, ['[', ']'], style, depth, |out, item| {
                write_json(out, item, style, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if style.sort_keys {
                keys.sort();
            }
            write_container(out, &keys, ['{', '}'], style, depth, |out, key| {
                let name = match key.as_str() {
                    Some(s) => s.to_string(),
                    None => key.to_string(),
                };
                json_string(out, &name, style.ensure_ascii)?;
                out.push_str(&style.key_sep);
                write_json(out, &value.get_item(key)?, style, depth + 1)
            })?;
        }
        other => {
            return Err(Error::new(
                ErrorKind::BadSerialization,
                format!("tojson: cannot serialise a {other}"),
            ))
        }
    }
    Ok(())
}

/// Writes a JSON list or object: `brackets` around the items, each written by `write_item` on
/// its own line when indenting, separated as `style` says; an empty one stays on one line.
fn write_container(
    out: &mut String,
    items: &[Value],
    brackets: [char; 2],
    style: &JsonStyle,
    depth: usize,
    mut write_item: impl FnMut(&mut String, &Value) -> Result<(), Error>,
) -> Result<(), Error> {
    let [open, close] = brackets;
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&style.item_sep);
        }
        newline(out, style, depth + 1);
        write_item(out, item)?;
    }
    newline(out, style, depth);
    out.push(close);
    Ok(())
}

/// A line break and the indent of `depth` levels, when `style` indents.
fn newline(out: &mut String, style: &JsonStyle, depth: usize) {
    if let Some(width) = style.indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', width * depth));
    }
}

/// Prints `{{ value }}` as Jinja2 does: lists and dicts in Python's repr (`['a', None]`,
/// `{'k': 'v'}`); everything else as minijinja prints it (which already writes `True`, `None`).
pub(super) fn python_formatter(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    match value.kind() {
        ValueKind::Seq | ValueKind::Map => {
            let mut repr = String::new();
            python_repr(&mut repr, value)?;
            out.write_str(&repr).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's repr of a list or dict: `brackets` around the items (each written by `write_item`),
/// `, ` between them.
fn python_repr_items(
    out: &mut String,
    value: &Value,
    brackets: [char; 2],
    mut write_item: impl FnMut(&mut String, Value) -> Result<(), Error>,
) -> Result<(), Error> {
    let [open, close] = brackets;
    out.push(open);
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_item(out, item)?;
    }
    out.push(close);
    Ok(())
}

fn python_repr(out: &mut String, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::String => python_str_repr(out, value.as_str().unwrap_or_default()),
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Seq => {
            python_repr_items(out, value, ['[', ']'], |out, item| python_repr(out, &item))?
        }
        ValueKind::Map => python_repr_items(out, value, ['{', '}'], |out, key| {
            python_repr(out, &key)?;
            out.push_str(": ");
            python_repr(out, &value.get_item(&key)?)
        })?,
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

/// Python's `repr(str)`: single quotes unless the text has a single quote and no double quote.
fn python_str_repr(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for ch in s.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || (0x7f..=0xa0).contains(&(c as u32)) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}
