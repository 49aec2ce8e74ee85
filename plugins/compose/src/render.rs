//! Rendering a template: write the wizard's answers into the compose
//! document at their binding paths, then normalise Compose v1 (services at
//! the top level) to the `services:` form every later step reads.

use serde_json::{Map, Value as Json};
use serde_norway::{Mapping, Value};

use crate::wizard::Wizard;

/// One step of a binding path such as `gitlab.ports[0]` or
/// `services.server.environment.GITLAB_PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A mapping key, or the `K` of a list-form `K=V` entry.
    Key(String),
    /// A list index.
    Index(usize),
}

/// Split a binding path into steps.
pub fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let end = stripped
                .find(']')
                .ok_or_else(|| format!("binding path `{path}`: unclosed `[`"))?;
            let index = stripped[..end].parse().map_err(|_| {
                format!(
                    "binding path `{path}`: `{}` is not an index",
                    &stripped[..end]
                )
            })?;
            steps.push(Step::Index(index));
            rest = &stripped[end + 1..];
        }
        if !rest.is_empty() || (key.is_empty() && part.is_empty()) {
            return Err(format!("binding path `{path}`: cannot read `{part}`"));
        }
    }
    if steps.is_empty() {
        return Err(format!("binding path `{path}` is empty"));
    }
    Ok(steps)
}

fn text(answer: &Json) -> String {
    match answer {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn yaml(answer: &Json) -> Value {
    serde_norway::to_value(answer).unwrap_or(Value::Null)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The new value of one list entry: a port `H:C` (or `IP:H:C`) gets a new
/// host side, a volume `SRC:DST[:MODE]` a new source, a `K=V` a new value;
/// anything else is replaced.
fn replace_entry(old: &Value, answer: &Json) -> Value {
    let new = text(answer);
    let Some(old) = scalar_text(old) else {
        return yaml(answer);
    };
    if let Some((k, _)) = old.split_once('=') {
        if !k.contains(':') {
            return Value::String(format!("{k}={new}"));
        }
    }
    let parts: Vec<&str> = old.split(':').collect();
    match parts.as_slice() {
        [_, c] => Value::String(format!("{new}:{c}")),
        [src, dst, mode] if matches!(*mode, "ro" | "rw" | "z" | "Z") => {
            let _ = src;
            Value::String(format!("{new}:{dst}:{mode}"))
        }
        [ip, _, c] => Value::String(format!("{ip}:{new}:{c}")),
        [c] if c.chars().all(|ch| ch.is_ascii_digit() || ch == '/') => {
            Value::String(format!("{new}:{c}"))
        }
        _ => yaml(answer),
    }
}

/// Write `answer` at `path` in `doc`.
pub fn set(doc: &mut Value, path: &str, answer: &Json) -> Result<(), String> {
    let steps = parse_path(path)?;
    let missing = || format!("binding path `{path}` is not in docker-compose.yml");
    let (last, parents) = steps.split_last().ok_or_else(missing)?;
    let mut node = doc;
    for step in parents {
        node = match (step, node) {
            (Step::Key(k), Value::Mapping(m)) => m.get_mut(k.as_str()).ok_or_else(missing)?,
            (Step::Index(i), Value::Sequence(s)) => s.get_mut(*i).ok_or_else(missing)?,
            _ => return Err(missing()),
        };
    }
    match (last, node) {
        (Step::Key(k), Value::Mapping(m)) => {
            let value = match m.get(k.as_str()) {
                // A string stays a string (environment values, image tags).
                Some(Value::String(_)) => Value::String(text(answer)),
                _ => yaml(answer),
            };
            m.insert(Value::String(k.clone()), value);
        }
        (Step::Key(k), Value::Sequence(list)) => {
            // A list-form environment: `K=V` gets a new V (added when missing).
            let entry = Value::String(format!("{k}={}", text(answer)));
            let prefix = format!("{k}=");
            match list
                .iter_mut()
                .find(|e| e.as_str().is_some_and(|s| s.starts_with(&prefix) || s == k))
            {
                Some(e) => *e = entry,
                None => list.push(entry),
            }
        }
        (Step::Index(i), Value::Sequence(list)) => {
            let e = list.get_mut(*i).ok_or_else(missing)?;
            *e = replace_entry(e, answer);
        }
        _ => return Err(missing()),
    }
    Ok(())
}

/// Whether a document is Compose v1: no `services` key at the top.
pub fn is_v1(doc: &Value) -> bool {
    doc.as_mapping()
        .is_some_and(|m| !m.contains_key("services"))
}

/// Compose v1 (every top-level key a service) as the `services:` form:
/// `{version: "2", services: {...}}`. v2, v3 and the compose spec pass through.
pub fn normalise(doc: Value) -> Result<Value, String> {
    let Value::Mapping(top) = doc else {
        return Err("docker-compose.yml: must be a mapping".into());
    };
    if top.contains_key("services") {
        return Ok(Value::Mapping(top));
    }
    let mut services = Mapping::new();
    for (name, service) in top {
        if !service.is_mapping() {
            return Err(format!(
                "docker-compose.yml: `{}` is neither a service (v1) nor a known key",
                scalar_text(&name).unwrap_or_default()
            ));
        }
        services.insert(name, service);
    }
    let mut out = Mapping::new();
    out.insert("version".into(), "2".into());
    out.insert("services".into(), Value::Mapping(services));
    Ok(Value::Mapping(out))
}

/// Render a template: parse its compose text, write `answers` at the
/// wizard's binding paths (unanswered fields keep the template's values),
/// and normalise. Returns the document.
pub fn render(
    compose: &str,
    wizard: &Wizard,
    answers: &Map<String, Json>,
) -> Result<Value, String> {
    let mut doc: Value =
        serde_norway::from_str(compose).map_err(|e| format!("docker-compose.yml: {e}"))?;
    for (field, answer) in answers {
        for path in wizard.paths.get(field).into_iter().flatten() {
            set(&mut doc, path, answer).map_err(|e| format!("binding.{field}: {e}"))?;
        }
    }
    normalise(doc)
}

/// The document as YAML text.
pub fn to_text(doc: &Value) -> Result<String, String> {
    serde_norway::to_string(doc).map_err(|e| format!("docker-compose.yml: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const V1: &str = "gitlab:\n  image: gitlab:1\n  links:\n    - db:database\n  ports:\n    - \"10080:80\"\n    - 127.0.0.1:10022:22\n  environment:\n    - GITLAB_PORT=10080\n    - OTHER=x\ndb:\n  image: pg\n  environment:\n    PGPORT: \"5432\"\n  volumes:\n    - ./data:/var/lib/pg:ro\n";

    fn get<'a>(doc: &'a Value, path: &[&str]) -> &'a Value {
        path.iter().fold(doc, |d, k| &d[*k])
    }

    #[test]
    fn paths_parse() {
        assert_eq!(
            parse_path("gitlab.ports[0]").unwrap(),
            [
                Step::Key("gitlab".into()),
                Step::Key("ports".into()),
                Step::Index(0)
            ]
        );
        assert_eq!(parse_path("services.a.x[1][2]").unwrap().len(), 5);
        assert!(parse_path("a.[x]").is_err());
        assert!(parse_path("a[0").is_err());
        assert!(parse_path("").is_err());
    }

    #[test]
    fn bindings_replace_host_ports_env_values_and_scalars() {
        let mut doc: Value = serde_norway::from_str(V1).unwrap();
        set(&mut doc, "gitlab.ports[0]", &json!(8080)).unwrap();
        set(&mut doc, "gitlab.ports[1]", &json!(2222)).unwrap();
        set(&mut doc, "gitlab.environment.GITLAB_PORT", &json!(8080)).unwrap();
        set(&mut doc, "gitlab.environment.NEW", &json!("n")).unwrap();
        set(&mut doc, "db.environment.PGPORT", &json!(6000)).unwrap();
        set(&mut doc, "db.volumes[0]", &json!("/share/pg")).unwrap();
        set(&mut doc, "db.image", &json!("pg:2")).unwrap();
        let g = get(&doc, &["gitlab"]);
        assert_eq!(g["ports"][0], Value::from("8080:80"));
        assert_eq!(g["ports"][1], Value::from("127.0.0.1:2222:22"));
        assert_eq!(g["environment"][0], Value::from("GITLAB_PORT=8080"));
        assert_eq!(g["environment"][1], Value::from("OTHER=x"));
        assert_eq!(g["environment"][2], Value::from("NEW=n"));
        let d = get(&doc, &["db"]);
        assert_eq!(d["environment"]["PGPORT"], Value::from("6000"));
        assert_eq!(d["volumes"][0], Value::from("/share/pg:/var/lib/pg:ro"));
        assert_eq!(d["image"], Value::from("pg:2"));
        assert!(set(&mut doc, "gitlab.ports[5]", &json!(1))
            .unwrap_err()
            .contains("not in docker-compose.yml"));
        assert!(set(&mut doc, "nope.ports[0]", &json!(1)).is_err());
    }

    #[test]
    fn v1_is_normalised_to_services_and_v3_passes() {
        let doc = normalise(serde_norway::from_str(V1).unwrap()).unwrap();
        assert_eq!(doc["version"], Value::from("2"));
        assert_eq!(doc["services"]["gitlab"]["image"], Value::from("gitlab:1"));
        assert_eq!(doc["services"]["db"]["image"], Value::from("pg"));
        let parsed: docker_compose_types::Compose = serde_norway::from_value(doc).unwrap();
        assert_eq!(parsed.services.0.len(), 2);
        let v3 = "version: \"3\"\nservices:\n  a:\n    image: x\nvolumes:\n  data: {}\n";
        let doc = normalise(serde_norway::from_str(v3).unwrap()).unwrap();
        assert_eq!(doc["version"], Value::from("3"));
        assert!(is_v1(&serde_norway::from_str(V1).unwrap()));
        assert!(normalise(Value::from("x")).is_err());
        assert!(normalise(serde_norway::from_str("a: 1").unwrap()).is_err());
    }

    #[test]
    fn render_applies_answers_before_normalising() {
        let wizard = Wizard::parse(
            r#"{"wizard": [{"schema": {"p": {"type": "integer"}}}],
                "binding": {"data": {"p": ["gitlab.ports[0]", "gitlab.environment.GITLAB_PORT"]}}}"#,
        )
        .unwrap();
        let answers = json!({"p": 9000}).as_object().unwrap().clone();
        let doc = render(V1, &wizard, &answers).unwrap();
        assert_eq!(
            doc["services"]["gitlab"]["ports"][0],
            Value::from("9000:80")
        );
        let untouched = render(V1, &wizard, &Map::new()).unwrap();
        assert_eq!(
            untouched["services"]["gitlab"]["ports"][0],
            Value::from("10080:80")
        );
    }
}
