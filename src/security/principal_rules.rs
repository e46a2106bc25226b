//! Kafka's `ssl.principal.mapping.rules`: how a client certificate's subject (RFC 2253) becomes
//! the principal name. A list of `RULE:pattern/replacement/[LU]` and `DEFAULT` entries, tried
//! in order: the first rule whose pattern matches the whole subject gives the name (`$1`... are
//! the pattern's groups; `L`/`U` lower- or upper-case the result), `DEFAULT` gives the subject
//! itself. No rule applying fails the authentication, as in Kafka.

use regex::Regex;

#[derive(Debug)]
enum Rule {
    Default,
    Map {
        pattern: Regex,
        replacement: String,
        case: Option<char>,
    },
}

/// The parsed rules.
#[derive(Debug)]
pub struct PrincipalRules(Vec<Rule>);

impl PrincipalRules {
    /// Parses Kafka's syntax; `DEFAULT` alone when `spec` is empty.
    pub fn parse(spec: &str) -> Result<PrincipalRules, String> {
        let token = Regex::new(
            r"^\s*(?:(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?))\s*(?:,|$)",
        )
        .map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        let mut rest = spec.trim();
        while !rest.is_empty() {
            let Some(c) = token.captures(rest) else {
                return Err(format!("invalid ssl.principal.mapping.rules at {rest:?}"));
            };
            if c.get(1).is_some() {
                rules.push(Rule::Default);
            } else {
                let pattern = c.get(2).map_or("", |m| m.as_str()).replace("\\/", "/");
                let pattern = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("ssl.principal.mapping.rules: {e}"))?;
                rules.push(Rule::Map {
                    pattern,
                    replacement: c.get(3).map_or("", |m| m.as_str()).replace("\\/", "/"),
                    case: c.get(4).and_then(|m| m.as_str().chars().next()),
                });
            }
            let used = c.get(0).map_or(rest.len(), |m| m.end());
            rest = rest[used..].trim_start();
        }
        if rules.is_empty() {
            rules.push(Rule::Default);
        }
        Ok(PrincipalRules(rules))
    }

    /// The principal name for a subject, or why no rule applies.
    pub fn apply(&self, subject: &str) -> Result<String, String> {
        for rule in &self.0 {
            match rule {
                Rule::Default => return Ok(subject.to_string()),
                Rule::Map {
                    pattern,
                    replacement,
                    case,
                } => {
                    let Some(caps) = pattern.captures(subject) else {
                        continue;
                    };
                    let mut out = String::new();
                    caps.expand(replacement, &mut out);
                    return Ok(match case {
                        Some('L') => out.to_lowercase(),
                        Some('U') => out.to_uppercase(),
                        _ => out,
                    });
                }
            }
        }
        Err(format!("No rules apply to {subject}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_examples() {
        let r = PrincipalRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            r.apply("CN=kafka-client,OU=ServiceUsers,O=Unknown")
                .unwrap(),
            "kafka-client"
        );
        assert_eq!(
            r.apply("CN=Duke,OU=JavaSoft,O=Sun").unwrap(),
            "duke@javasoft"
        );
        assert_eq!(r.apply("CN=other").unwrap(), "CN=other");
        let strict = PrincipalRules::parse("RULE:^CN=([a-z]+)$/$1/U").unwrap();
        assert_eq!(strict.apply("CN=abc").unwrap(), "ABC");
        assert!(strict.apply("CN=abc,O=x").is_err());
        assert!(PrincipalRules::parse("RULE:broken").is_err());
        assert!(matches!(
            PrincipalRules::parse("").unwrap().apply("CN=x").as_deref(),
            Ok("CN=x")
        ));
    }
}
