//! Markdown (as LLMs write it) → Slack mrkdwn, and splitting long texts at
//! Slack's message limit.
//!
//! Conversions: `**bold**`/`__bold__` → `*bold*`, `*italic*` → `_italic_`,
//! `~~strike~~` → `~strike~`, `[text](url)` → `<url|text>`, `# Heading` →
//! `*Heading*`, `- item`/`* item` → `• item`; `&`, `<`, `>` are escaped; code
//! spans and fenced blocks are kept verbatim (escaped only).

/// Converts Markdown to mrkdwn.
pub fn to_mrkdwn(md: &str) -> String {
    let mut out = String::with_capacity(md.len());
    let mut in_fence = false;
    for (i, line) in md.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            in_fence = !in_fence;
            out.push_str(&escape(line));
            continue;
        }
        if in_fence {
            out.push_str(&escape(line));
            continue;
        }
        let indent = &line[..line.len() - trimmed.len()];
        if let Some(h) = heading(trimmed) {
            out.push('*');
            out.push_str(&inline(h.trim_matches('*')));
            out.push('*');
        } else if let Some(item) = trimmed.strip_prefix("- ").or_else(|| trimmed.strip_prefix("* ")) {
            out.push_str(indent);
            out.push_str("• ");
            out.push_str(&inline(item));
        } else {
            out.push_str(&inline(line));
        }
    }
    out
}

fn heading(line: &str) -> Option<&str> {
    let hashes = line.chars().take_while(|c| *c == '#').count();
    (1..=6).contains(&hashes).then(|| line[hashes..].strip_prefix(' ')).flatten()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Inline spans of one line.
fn inline(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if let Some((converted, used)) = span(rest) {
            out.push_str(&converted);
            rest = &rest[used..];
        } else {
            out.push_str(&escape(&c.to_string()));
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// A converted span at the start of `s` and the bytes it used.
fn span(s: &str) -> Option<(String, usize)> {
    if let Some(body) = s.strip_prefix('`') {
        let end = body.find('`')?;
        return Some((format!("`{}`", escape(&body[..end])), end + 2));
    }
    for (marker, slack) in [("**", "*"), ("__", "*"), ("~~", "~")] {
        if let Some(body) = s.strip_prefix(marker)
            && let Some(end) = body.find(marker)
            && end > 0
        {
            return Some((format!("{slack}{}{slack}", inline(&body[..end])), end + 4));
        }
    }
    if let Some(body) = s.strip_prefix('*')
        && body.starts_with(|c: char| !c.is_whitespace() && c != '*')
        && let Some(end) = body.find('*')
        && !body[..end].ends_with(char::is_whitespace)
    {
        return Some((format!("_{}_", inline(&body[..end])), end + 2));
    }
    if let Some(body) = s.strip_prefix('[')
        && let Some(close) = body.find("](")
        && let Some(paren) = body[close + 2..].find(')')
    {
        let (text, url) = (&body[..close], &body[close + 2..close + 2 + paren]);
        if !url.is_empty() && !url.contains(' ') && !text.contains('[') {
            let url = url.replace('|', "%7C").replace('>', "%3E");
            return Some((format!("<{url}|{}>", escape(text)), close + paren + 4));
        }
    }
    None
}

/// Splits `text` into pieces of at most `max` characters, preferring paragraph
/// breaks, then line breaks, then spaces; a code fence cut in two is closed
/// and reopened so both pieces render.
pub fn split(text: &str, max: usize) -> Vec<String> {
    let max = max.max(16);
    let mut pieces = Vec::new();
    let mut rest = text.trim_end().to_string();
    while rest.chars().count() > max {
        let budget = max - 4; // room for a closing fence
        let cut_byte = rest.char_indices().nth(budget).map(|(b, _)| b).unwrap_or(rest.len());
        let window = &rest[..cut_byte];
        let at = [window.rfind("\n\n"), window.rfind('\n'), window.rfind(' ')]
            .into_iter()
            .flatten()
            .find(|&p| p >= cut_byte / 2)
            .unwrap_or(cut_byte);
        let mut head = rest[..at].trim_end().to_string();
        let mut tail = rest[at..].trim_start().to_string();
        if head.matches("```").count() % 2 == 1 {
            head.push_str("\n```");
            tail = format!("```\n{tail}");
        }
        if head.is_empty() {
            // No break at all: cut hard.
            head = rest[..cut_byte].to_string();
            tail = rest[cut_byte..].to_string();
        }
        pieces.push(head);
        rest = tail;
    }
    if !rest.is_empty() || pieces.is_empty() {
        pieces.push(rest);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_mrkdwn() {
        assert_eq!(to_mrkdwn("**bold** and *it* and ~~gone~~"), "*bold* and _it_ and ~gone~");
        assert_eq!(to_mrkdwn("see [the docs](https://x.io/a?b=1)"), "see <https://x.io/a?b=1|the docs>");
        assert_eq!(to_mrkdwn("# Title\n- one\n* two"), "*Title*\n• one\n• two");
        assert_eq!(to_mrkdwn("a < b && c > d"), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(to_mrkdwn("`**x**` stays"), "`**x**` stays");
        assert_eq!(to_mrkdwn("```\n**raw** <x>\n```"), "```\n**raw** &lt;x&gt;\n```");
        assert_eq!(to_mrkdwn("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(to_mrkdwn("plain echo[1]: hi"), "plain echo[1]: hi");
        assert_eq!(to_mrkdwn("__under__"), "*under*");
    }

    #[test]
    fn long_texts_split_at_breaks_within_the_limit() {
        let para = "word ".repeat(50);
        let text = format!("{para}\n\n{para}\n\n{para}");
        let pieces = split(&text, 300);
        assert!(pieces.len() >= 3, "{pieces:?}");
        assert!(pieces.iter().all(|p| p.chars().count() <= 300));
        let joined: String = pieces.join(" ");
        assert_eq!(joined.split_whitespace().count(), 150);
        assert_eq!(split("short", 300), vec!["short".to_string()]);
        let hard = "x".repeat(1000);
        let pieces = split(&hard, 100);
        assert!(pieces.iter().all(|p| p.chars().count() <= 100));
        assert_eq!(pieces.concat(), hard);
        let multibyte = "é".repeat(500);
        assert!(split(&multibyte, 100).iter().all(|p| p.chars().count() <= 100));
    }

    #[test]
    fn code_fences_are_closed_and_reopened() {
        let code = format!("```\n{}\n```", "let x = 1;\n".repeat(40));
        let pieces = split(&code, 200);
        assert!(pieces.len() > 1);
        for p in &pieces {
            assert_eq!(p.matches("```").count() % 2, 0, "{p}");
            assert!(p.chars().count() <= 200);
        }
    }
}
