//! Drawing: the live screen (ratatui) and the plain table of `--once`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row as TableRow, Table};

use super::model::{HEADERS, View, human};

const WIDTHS: [u16; 8] = [24, 9, 9, 8, 8, 8, 16, 10];

fn summary(view: Option<&View>) -> String {
    let Some(view) = view else {
        return "waiting for a second reading…".into();
    };
    let cpu = view
        .cpu_share
        .map(|c| format!("{:.2}% of a core", c * 100.0))
        .unwrap_or_else(|| "-".into());
    let rss = view
        .rss_bytes
        .map(|b| format!("{}B", human(b)))
        .unwrap_or_else(|| "-".into());
    format!("CPU {cpu}   RSS {rss}")
}

/// The live screen: a header line, a status line, and one row per component.
pub fn draw(frame: &mut Frame, view: Option<&View>, url: &str, status: &str) {
    let [head, body] =
        Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(frame.area());
    let header = vec![
        Line::from(format!("vigil-agent top — {url}   {}", summary(view))),
        Line::from(format!("{status}   (q to quit)")),
    ];
    frame.render_widget(Paragraph::new(header), head);
    let rows: Vec<TableRow> = view
        .map(|v| v.rows.iter().map(|r| TableRow::new(r.cells())).collect())
        .unwrap_or_default();
    let table = Table::new(rows, WIDTHS.map(Constraint::Length))
        .header(TableRow::new(HEADERS).style(Style::new().add_modifier(Modifier::BOLD)));
    frame.render_widget(table, body);
}

/// The same table as text, for `--once` (scripts, logs, tests).
pub fn text(view: &View, url: &str) -> String {
    let mut out = format!("vigil-agent top — {url}   {}\n", summary(Some(view)));
    let mut line = |cells: Vec<String>| {
        for (cell, width) in cells.iter().zip(WIDTHS) {
            out.push_str(&format!("{cell:<w$}", w = width as usize));
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    };
    line(HEADERS.iter().map(|h| h.to_string()).collect());
    for row in &view.rows {
        line(row.cells().to_vec());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::top::model::{Reading, Totals};

    fn view() -> View {
        let mut after = Reading::default();
        after.components.insert(
            "cloudwatch".into(),
            Totals {
                received: 5000.0,
                sent: 4000.0,
                buffer_bytes: Some(25.0),
                buffer_max_bytes: Some(100.0),
                ..Totals::default()
            },
        );
        View::between(&Reading::default(), &after, Duration::from_secs(1))
    }

    #[test]
    fn the_screen_lists_every_component_under_the_headers() {
        let mut terminal = Terminal::new(TestBackend::new(100, 6)).unwrap();
        let v = view();
        terminal
            .draw(|f| draw(f, Some(&v), "http://127.0.0.1:9598/metrics", "ok"))
            .unwrap();
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(screen.contains("COMPONENT"), "{screen}");
        assert!(screen.contains("cloudwatch"), "{screen}");
        assert!(screen.contains("5.0k"), "{screen}");
        assert!(screen.contains("25% of 100B"), "{screen}");
    }

    #[test]
    fn the_text_table_has_a_line_per_component() {
        let t = text(&view(), "u");
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[2].starts_with("cloudwatch"));
    }
}
