//! The `--watch` screen in a terminal, like `top`: the alternate screen, one frame per interval
//! cut to the terminal's size, a one-line header, and keys (`q` quits, `p` pauses, `<`/`>` and
//! letters sort). The frame itself is a pure function ([`frame`]); [`Screen`] owns the terminal
//! (through crossterm) and gives it back as it found it when dropped: on `q`, Ctrl-C, SIGTERM, an
//! error, or a panic.

use std::io::{self, Write};
use std::time::Duration;

use crossterm::event::{Event, EventStream, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, queue, style, terminal};
use futures::StreamExt;

use crate::model::PodStatsList;

use super::table::{grid, lay_out, width, Grid, TableOptions, Widths};
use super::{bytes_cell, rate_cell, SortKey};

/// Columns on the screen are two spaces apart (three in a pipe, like kubectl): the default
/// columns then fit 80 characters.
const SCREEN_GAP: usize = 2;

/// What the watch screen shows besides the document: how it sorts, whether it is paused.
#[derive(Debug, Clone)]
pub struct View {
    pub opts: TableOptions,
    pub interval: Duration,
    pub paused: bool,
    /// Kept across frames so that columns do not move.
    widths: Widths,
}

impl View {
    pub fn new(opts: TableOptions, interval: Duration) -> View {
        View {
            opts,
            interval,
            paused: false,
            widths: Widths::default(),
        }
    }
}

/// The header line: node, pods, warnings, interval, total rates and memory (most important
/// first: a narrow terminal cuts the end).
pub fn header_line(doc: &PodStatsList, interval: Duration) -> String {
    let t = super::table::totals(doc);
    let warnings = doc.warnings.len();
    format!(
        "podnet {} · {} pod{} · {} warning{} · every {:.1}s · rx {} tx {} · mem {}",
        doc.node,
        doc.items.len(),
        if doc.items.len() == 1 { "" } else { "s" },
        warnings,
        if warnings == 1 { "" } else { "s" },
        interval.as_secs_f64(),
        rate_cell(t.network.rx_bytes_per_sec),
        rate_cell(t.network.tx_bytes_per_sec),
        bytes_cell(t.memory.usage_bytes),
    )
}

/// The time of `doc` (`10:00:00`, UTC).
pub fn time_of(doc: &PodStatsList) -> &str {
    doc.timestamp.get(11..19).unwrap_or(&doc.timestamp)
}

/// The key line at the bottom of the screen.
fn footer_line(view: &View, doc: &PodStatsList) -> String {
    format!(
        "{}{} UTC · sort: {} · </> n r o m: sort · p: pause · q: quit",
        if view.paused { "PAUSED · " } else { "" },
        time_of(doc),
        view.opts.sort.name()
    )
}

/// One frame of `cols` × `rows` characters at most: the header, the column headers, as many
/// rows as fit (the last of them `… N more` when some do not), the warnings when there is room,
/// and the key line. Updates the view's column widths.
pub fn frame(
    view: &mut View,
    doc: &PodStatsList,
    empty: Option<&str>,
    cols: usize,
    rows: usize,
) -> Vec<String> {
    let mut out = Vec::new();
    if rows == 0 || cols == 0 {
        return out;
    }
    let cut = |s: &str| super::table::ellipsize(s, cols);
    out.push(cut(&header_line(doc, view.interval)));
    if rows < 4 {
        // No room for a table: the header, and the keys when there is a line for them.
        if rows > 1 {
            out.push(cut(&footer_line(view, doc)));
        }
        return out;
    }
    let g: Grid = grid(doc, &view.opts);
    view.widths.fit(&g);
    let (w, _) = view.widths.cut_to(cols, SCREEN_GAP);
    let body = rows - 2; // the header line and the key line
    let mut lines = lay_out(std::iter::once(&g.header), &w, SCREEN_GAP);
    let room = body - 1;
    let table = lay_out(&g.rows, &w, SCREEN_GAP);
    if table.len() > room {
        let keep = room.saturating_sub(1);
        lines.extend(table[..keep].iter().cloned());
        lines.push(format!("… {} more", table.len() - keep));
    } else {
        lines.extend(table);
        let mut notes: Vec<String> = empty.map(String::from).into_iter().collect();
        notes.extend(doc.warnings.iter().map(|w| format!("warning: {w}")));
        if !notes.is_empty() && lines.len() + 1 < body {
            lines.push(String::new());
            for n in notes {
                if lines.len() >= body {
                    break;
                }
                lines.push(n);
            }
        }
    }
    out.extend(lines.iter().map(|l| cut(l)));
    while out.len() < rows - 1 {
        out.push(String::new());
    }
    out.push(cut(&footer_line(view, doc)));
    debug_assert!(out.len() <= rows && out.iter().all(|l| width(l) <= cols));
    out
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Redraw,
    Nothing,
}

/// Applies a key to the view.
pub fn key(view: &mut View, k: &KeyEvent) -> Action {
    if k.kind == KeyEventKind::Release {
        return Action::Nothing;
    }
    let step = |view: &mut View, by: isize| {
        let order = SortKey::COLUMN_ORDER;
        let at = order.iter().position(|s| *s == view.opts.sort).unwrap_or(0) as isize;
        let n = order.len() as isize;
        view.opts.sort = order[((at + by).rem_euclid(n)) as usize];
    };
    match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char('p') | KeyCode::Char('P') | KeyCode::Char(' ') => {
            view.paused = !view.paused;
            Action::Redraw
        }
        KeyCode::Char('<') | KeyCode::Left => {
            step(view, -1);
            Action::Redraw
        }
        KeyCode::Char('>') | KeyCode::Right => {
            step(view, 1);
            Action::Redraw
        }
        KeyCode::Char(c) => {
            let sort = match c {
                'n' => SortKey::Name,
                'r' => SortKey::Rate,
                'o' => SortKey::Opens,
                'm' => SortKey::Memory,
                's' => SortKey::Sockets,
                'f' => SortKey::Fds,
                _ => return Action::Nothing,
            };
            view.opts.sort = sort;
            Action::Redraw
        }
        _ => Action::Nothing,
    }
}

/// The terminal while the watch screen owns it.
pub struct Screen {
    out: io::Stdout,
    events: Option<EventStream>,
    pub view: View,
    /// The document on screen (while paused, the one before the pause) and its empty-list note.
    shown: Option<(PodStatsList, Option<String>)>,
    /// The newest document, shown when the pause ends.
    newest: Option<(PodStatsList, Option<String>)>,
    restored: bool,
}

/// Gives the terminal back: the normal screen, the cursor, cooked mode.
fn restore_terminal() {
    let mut out = io::stdout();
    let _ = execute!(out, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
}

impl Screen {
    /// Takes the terminal: raw mode (keys arrive one by one, Ctrl-C as a key), the alternate
    /// screen, no cursor. A panic gives it back before its message is printed.
    pub fn enter(view: View) -> io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let mut out = io::stdout();
        if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
            restore_terminal();
            return Err(e);
        }
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info)
        }));
        Ok(Screen {
            out,
            events: Some(EventStream::new()),
            view,
            shown: None,
            newest: None,
            restored: false,
        })
    }

    /// A new document: drawn now, unless paused.
    pub fn show(&mut self, doc: PodStatsList, empty: Option<String>) -> io::Result<()> {
        if self.view.paused {
            self.newest = Some((doc, empty));
            return self.draw();
        }
        self.shown = Some((doc, empty));
        self.draw()
    }

    /// Redraws the document on screen at the terminal's current size.
    pub fn draw(&mut self) -> io::Result<()> {
        let Some((doc, empty)) = &self.shown else {
            return Ok(());
        };
        let (cols, rows) = terminal::size()?;
        let (cols, rows) = (cols as usize, rows as usize);
        let lines = frame(&mut self.view, doc, empty.as_deref(), cols, rows);
        queue!(self.out, terminal::BeginSynchronizedUpdate)?;
        for y in 0..rows {
            let line = lines.get(y).map(String::as_str).unwrap_or("");
            queue!(self.out, cursor::MoveTo(0, y as u16), style::Print(line))?;
            // A full-width line leaves the cursor in the wrap-pending state, where erasing would
            // erase its last character: erase only after shorter lines.
            if width(line) < cols {
                queue!(self.out, terminal::Clear(terminal::ClearType::UntilNewLine))?;
            }
        }
        queue!(self.out, terminal::EndSynchronizedUpdate)?;
        self.out.flush()
    }

    /// The next terminal event (a key, a resize); never resolves once input is closed.
    pub async fn next_event(&mut self) -> Event {
        if let Some(events) = &mut self.events {
            match events.next().await {
                Some(Ok(ev)) => return ev,
                Some(Err(e)) => log::debug!("reading the terminal: {e}"),
                None => {}
            }
            self.events = None;
        }
        futures::future::pending().await
    }

    /// Applies an event; `true` when it asks to quit.
    pub fn handle(&mut self, ev: Event) -> io::Result<bool> {
        match ev {
            Event::Key(k) => {
                let was_paused = self.view.paused;
                match key(&mut self.view, &k) {
                    Action::Quit => return Ok(true),
                    Action::Redraw => {
                        if was_paused && !self.view.paused {
                            if let Some(n) = self.newest.take() {
                                self.shown = Some(n);
                            }
                        }
                        self.draw()?;
                    }
                    Action::Nothing => {}
                }
            }
            Event::Resize(..) => self.draw()?,
            _ => {}
        }
        Ok(false)
    }

    /// The newest document received (for printing after the screen is given back).
    pub fn last(&self) -> Option<&(PodStatsList, Option<String>)> {
        self.newest.as_ref().or(self.shown.as_ref())
    }

    /// Gives the terminal back now (also done on drop).
    pub fn restore(&mut self) {
        if !self.restored {
            self.restored = true;
            restore_terminal();
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Whether `--watch` gets the screen: standard output is a terminal that is not `TERM=dumb`.
pub fn wanted(stdout_is_terminal: bool, term: Option<&str>) -> bool {
    stdout_is_terminal && !matches!(term, None | Some("") | Some("dumb"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PodStats;

    fn doc(n: usize) -> PodStatsList {
        let mut d = PodStatsList::new("node-1".into(), "2026-11-21T10:00:00.123Z".into(), 1.0);
        for i in 0..n {
            let mut p = PodStats {
                namespace: "shop".into(),
                pod: format!("web-{i}-with-a-rather-long-generated-name-7d9f8c6b5"),
                uid: format!("u{i}"),
                ..PodStats::default()
            };
            p.network.rx_bytes_per_sec = (i * 1000) as f64;
            d.items.push(p);
        }
        d.warnings.push("pod shop/x (Pending): no cgroup".into());
        d
    }

    #[test]
    fn a_frame_fits_the_terminal_and_keeps_its_header() {
        for (cols, rows) in [(80, 24), (60, 10), (20, 3), (40, 1)] {
            let mut v = View::new(
                TableOptions {
                    sort: SortKey::Rate,
                    ..TableOptions::default()
                },
                Duration::from_secs(1),
            );
            let f = frame(&mut v, &doc(30), None, cols, rows);
            assert!(f.len() <= rows, "{cols}x{rows}: {f:#?}");
            assert!(f.iter().all(|l| width(l) <= cols), "{cols}x{rows}: {f:#?}");
            // The header's start, as much of it as fits (the rest ends in an ellipsis).
            let header: String = "podnet node-1 · 30 pods · 1 warning · every 1.0s"
                .chars()
                .take(cols - 1)
                .collect();
            assert!(f[0].starts_with(&header), "{f:#?}");
            if rows >= 10 {
                assert!(f[1].starts_with("NAMESPACE"), "{f:#?}");
                // Sorted by the current rate: the busiest pod first.
                assert!(f[2].contains("web-29") || f[2].contains("web-2…"), "{f:#?}");
                assert!(f.iter().any(|l| l.starts_with("… ")), "{f:#?}");
                assert!(f.last().unwrap().contains("sort: rate"), "{f:#?}");
            }
        }
    }

    #[test]
    fn columns_keep_their_place_between_frames() {
        let mut v = View::new(TableOptions::default(), Duration::from_secs(1));
        let big = frame(&mut v, &doc(3), None, 200, 24);
        let small = frame(&mut v, &doc(1), None, 200, 24);
        let col = |l: &str| l.find("RX/S").unwrap();
        assert_eq!(col(&big[1]), col(&small[1]));
        // Room left: the warnings are listed.
        assert!(
            small.iter().any(|l| l.starts_with("warning: pod shop/x")),
            "{small:#?}"
        );
    }

    #[test]
    fn keys() {
        let mut v = View::new(TableOptions::default(), Duration::from_secs(1));
        let k = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        assert_eq!(key(&mut v, &k('q')), Action::Quit);
        assert_eq!(
            key(
                &mut v,
                &KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
            ),
            Action::Quit
        );
        assert_eq!(key(&mut v, &k('p')), Action::Redraw);
        assert!(v.paused);
        v.opts.sort = SortKey::Name;
        key(&mut v, &k('>'));
        assert_eq!(v.opts.sort, SortKey::Rate);
        key(&mut v, &k('<'));
        key(&mut v, &k('<'));
        assert_eq!(v.opts.sort, SortKey::Memory);
        key(&mut v, &k('o'));
        assert_eq!(v.opts.sort, SortKey::Opens);
        assert_eq!(key(&mut v, &k('z')), Action::Nothing);
    }

    #[test]
    fn the_screen_only_in_a_real_terminal() {
        assert!(wanted(true, Some("xterm-256color")));
        assert!(!wanted(true, Some("dumb")));
        assert!(!wanted(true, None));
        assert!(!wanted(false, Some("xterm")));
    }
}
