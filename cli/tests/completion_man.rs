//! `podnet completion` and the man pages, checked with the real tools: bash completes
//! `podnet st<TAB>` from the generated script, and `man -l` renders the generated pages.

mod common;

use std::process::Command;

use common::podnet_bin;

/// Runs bash's completion for `line` (the cursor at its end) with the script podnet prints,
/// and returns the candidates.
fn bash_complete(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(' ').collect();
    let script = format!(
        r#"source <("{bin}" completion bash) || exit 3
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT={point}
complete -p podnet >/dev/null || exit 4
fn=$(complete -p podnet | sed -E 's/.*-F ([^ ]+).*/\1/')
"$fn" podnet "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        bin = podnet_bin().display(),
        words = words
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(" "),
        cword = words.len() - 1,
        point = line.len(),
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &script])
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "bash failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    assert_eq!(bash_complete("podnet st"), ["stats"]);
    let flags = bash_complete("podnet stats --no");
    assert!(flags.contains(&"--no-headers".to_string()), "{flags:?}");
    let sorts = bash_complete("podnet stats --sort ");
    for k in ["name", "rate", "memory"] {
        assert!(sorts.contains(&k.to_string()), "{k} not in {sorts:?}");
    }
    let shells: Vec<String> = bash_complete("podnet completion ")
        .into_iter()
        .filter(|s| !s.starts_with('-'))
        .collect();
    assert_eq!(shells, ["bash", "elvish", "fish", "powershell", "zsh"]);
}

#[test]
fn zsh_and_fish_scripts_are_printed() {
    for (shell, needle) in [("zsh", "#compdef podnet"), ("fish", "complete -c podnet")] {
        let out = Command::new(podnet_bin())
            .args(["completion", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(needle), "{shell}:\n{text}");
        assert!(text.contains("no-headers"), "{shell}");
    }
}

#[test]
fn man_pages_render_with_every_option() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(podnet_bin())
        .arg("man")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (page, needles) in [
        (
            "podnet-stats.1",
            &[
                "--interval",
                "--watch",
                "--sort",
                "--no-headers",
                "--sum",
                "--containers",
                "--kubeconfig",
                "Exit status",
            ][..],
        ),
        ("podnet.1", &["podnet-stats", "completion"][..]),
        ("podnet-agent.1", &["--pin-dir"][..]),
    ] {
        let out = Command::new("man")
            .arg("-l")
            .arg(dir.path().join(page))
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .env("PAGER", "cat")
            .output()
            .expect("running man");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "man -l {page}: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // man renders hyphens as U+2010 in some locales; compare on ASCII hyphens.
        let text = text.replace(['\u{2010}', '\u{2212}'], "-");
        for n in needles {
            assert!(text.contains(n), "{page}: no {n} in\n{text}");
        }
        for l in text.lines() {
            assert!(l.chars().count() <= 80, "{page}: wider than MANWIDTH: {l}");
        }
    }
}
