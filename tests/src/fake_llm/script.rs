//! What the fake answers, decided by directives in the last message's text.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The part of a request the script looks at, in protocol-neutral form.
#[derive(Debug)]
pub struct Prompt {
    pub model: String,
    pub stream: bool,
    pub last: Last,
    /// User-role messages, not counting Anthropic's tool-result carriers.
    pub user_count: usize,
    /// Characters of all prompt text (system, messages, tool results).
    pub prompt_chars: usize,
}

#[derive(Debug)]
pub enum Last {
    ToolResult(String),
    Text(String),
}

#[derive(Debug, PartialEq)]
pub enum Answer {
    Text(String),
    ToolCall { name: String, arguments: String },
}

#[derive(Debug, PartialEq)]
pub enum Plan {
    Fail {
        status: u16,
        message: String,
    },
    Hang,
    /// `cut`: send only the first half of the answer, then end the body.
    Answer {
        delay: Option<Duration>,
        answer: Answer,
        cut: bool,
    },
}

/// Decides the answer. `failures` counts `#fail` hits per key over the fake's lifetime.
pub fn plan(prompt: &Prompt, failures: &Mutex<HashMap<String, u32>>) -> Plan {
    let text = match &prompt.last {
        Last::ToolResult(result) => {
            return Plan::Answer { delay: None, answer: Answer::Text(format!("tool said: {result}")), cut: false };
        }
        Last::Text(text) => text,
    };
    if let Some((status, n, key)) = directive(text, "#fail:").and_then(parse_fail) {
        let mut failures = failures.lock().expect("fake LLM failure counter poisoned");
        let seen = failures.entry(key.to_string()).or_insert(0);
        if *seen < n {
            *seen += 1;
            return Plan::Fail { status, message: format!("fake failure {} of {n} for key {key}", *seen) };
        }
    }
    if text.contains("#hang") {
        return Plan::Hang;
    }
    let delay = directive(text, "#slow:").and_then(|ms| ms.parse().ok()).map(Duration::from_millis);
    let answer = match text.find("#tool:") {
        Some(at) => {
            let rest = text[at + "#tool:".len()..].lines().next().unwrap_or("");
            let (name, args) = rest.split_once(':').unwrap_or((rest, ""));
            let args = args.trim();
            Answer::ToolCall {
                name: name.trim().to_string(),
                arguments: if args.is_empty() { "{}".into() } else { args.to_string() },
            }
        }
        None => Answer::Text(format!("echo[{}]: {text}", prompt.user_count)),
    };
    Plan::Answer { delay, answer, cut: text.contains("#cut") }
}

/// The word after `prefix` (up to whitespace), if the text has the directive.
fn directive<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let at = text.find(prefix)?;
    text[at + prefix.len()..].split_whitespace().next()
}

fn parse_fail(arg: &str) -> Option<(u16, u32, &str)> {
    let mut parts = arg.splitn(3, ':');
    let status = parts.next()?.parse().ok()?;
    let n = parts.next()?.parse().ok()?;
    Some((status, n, parts.next().unwrap_or("")))
}

/// ≈ chars / 4, at least 1: the fake's idea of a token.
pub fn tokens(chars: usize) -> u32 {
    u32::try_from(chars / 4).unwrap_or(u32::MAX).max(1)
}

/// Splits `s` into `n` non-empty pieces at char boundaries (fewer if it is shorter).
pub fn fragments(s: &str, n: usize) -> Vec<&str> {
    let chars = s.chars().count();
    let per = chars.div_ceil(n.max(1)).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    for (count, (i, _)) in s.char_indices().enumerate() {
        if count > 0 && count % per == 0 {
            out.push(&s[start..i]);
            start = i;
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

/// The answer text in word-sized pieces that concatenate back to it.
pub fn words(s: &str) -> Vec<&str> {
    s.split_inclusive(' ').collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(text: &str) -> Prompt {
        Prompt { model: "m".into(), stream: true, last: Last::Text(text.into()), user_count: 2, prompt_chars: 10 }
    }

    #[test]
    fn directives() {
        let f = Mutex::default();
        assert_eq!(
            plan(&prompt("hi there"), &f),
            Plan::Answer { delay: None, answer: Answer::Text("echo[2]: hi there".into()), cut: false }
        );
        assert_eq!(
            plan(&prompt("x #tool:get_time:{\"tz\": \"UTC\"}\nmore"), &f),
            Plan::Answer {
                delay: None,
                answer: Answer::ToolCall { name: "get_time".into(), arguments: "{\"tz\": \"UTC\"}".into() },
                cut: false,
            }
        );
        assert!(matches!(plan(&prompt("#fail:503:2:k go"), &f), Plan::Fail { status: 503, .. }));
        assert!(matches!(plan(&prompt("#fail:503:2:k go"), &f), Plan::Fail { status: 503, .. }));
        assert!(matches!(plan(&prompt("#fail:503:2:k go"), &f), Plan::Answer { .. }));
        assert!(matches!(plan(&prompt("#fail:429:1:other"), &f), Plan::Fail { status: 429, .. }));
        assert_eq!(plan(&prompt("please #hang"), &f), Plan::Hang);
        assert!(matches!(plan(&prompt("#slow:25 hi"), &f), Plan::Answer { delay: Some(d), .. } if d.as_millis() == 25));
        let tool = Prompt { last: Last::ToolResult("42".into()), ..prompt("") };
        assert_eq!(
            plan(&tool, &f),
            Plan::Answer { delay: None, answer: Answer::Text("tool said: 42".into()), cut: false }
        );
        assert!(matches!(plan(&prompt("a #cut b"), &f), Plan::Answer { cut: true, .. }));
    }

    #[test]
    fn splitting() {
        assert_eq!(fragments("{\"a\":1}", 3), ["{\"a", "\":1", "}"]);
        assert_eq!(fragments("{}", 3), ["{", "}"]);
        assert_eq!(fragments("é✓x", 2), ["é✓", "x"]);
        assert_eq!(words("echo[1]: a b").concat(), "echo[1]: a b");
        assert_eq!(tokens(0), 1);
        assert_eq!(tokens(40), 10);
    }
}
