//! The chain as an inline SVG: a column per stage, a box per step (linked
//! to its page), and the kernel hop between the VM stages.

use std::fmt::Write as _;

use super::model::{Book, StepInfo};
use crate::target::RunnerKind;

const WIDTH: usize = 190;
const GAP: usize = 70;
const TOP: usize = 64;
const ROW: usize = 32;
const BOX: usize = 24;
/// A stage with more steps continues in a column beside.
const ROWS: usize = 20;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Inside the SVG, so that it looks the same in mdBook's rendering.
const STYLE: &str = "<style>svg.chain text { font: 13px ui-monospace, monospace; fill: #1f2328; } svg.chain .stage { font: bold 15px system-ui, sans-serif; } svg.chain .runs-on { font: 12px system-ui, sans-serif; fill: #57606a; } svg.chain rect.step { fill: #eaf2fb; stroke: #3b6ea5; stroke-width: 1.2; } svg.chain rect.unbuilt { fill: #fff; stroke: #8c959f; stroke-dasharray: 4 3; } svg.chain rect.kexec { fill: #fff1e6; stroke: #c2410c; stroke-width: 1.6; } svg.chain a:hover rect { stroke-width: 2.5; } svg.chain path.link { stroke: #57606a; fill: none; } svg.chain path.hop { stroke: #c2410c; stroke-width: 2; fill: none; stroke-dasharray: 6 4; } svg.chain .hop-label { font: bold 12px system-ui, sans-serif; fill: #c2410c; }</style>\n";

/// The diagram for a page `depth` directories below the book's top. It has
/// no blank line, so Markdown keeps it as one block of HTML.
pub fn svg(book: &Book, depth: usize) -> String {
    let up = "../".repeat(depth);
    let stages = book.stages();
    let columns: Vec<(&str, &[&StepInfo], bool)> = stages
        .iter()
        .flat_map(|(stage, steps)| {
            let stage: &str = stage;
            steps
                .chunks(ROWS)
                .enumerate()
                .map(move |(i, chunk)| (stage, chunk, i == 0))
                .collect::<Vec<_>>()
        })
        .collect();
    let tallest = columns.iter().map(|(_, s, _)| s.len()).max().unwrap_or(0);
    let width = columns.len() * (WIDTH + GAP) - GAP + 20;
    let height = TOP + tallest * ROW + 10;
    let mut svg = format!(
        "<svg class=\"chain\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"The chain of target {}\">\n",
        esc(&book.chain.target.name)
    );
    svg += "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker><marker id=\"hop\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#c2410c\"/></marker></defs>\n";
    svg += STYLE;
    let mut last: Option<(usize, usize, bool)> = None;
    for (column, (stage, steps, starts)) in columns.iter().enumerate() {
        let x = 10 + column * (WIDTH + GAP);
        let first = &steps[0].chain_step;
        let runs_on = match (&first.runner, &first.vm, starts) {
            (_, _, false) => "continued".to_string(),
            (RunnerKind::Host, _, _) => "host sandbox".to_string(),
            (RunnerKind::Vm, Some(vm), _) => {
                format!("qemu, {}", vm.kernel.split(':').next().unwrap_or(""))
            }
            (RunnerKind::Vm, None, _) => "qemu".to_string(),
        };
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" class=\"stage\">stage {}</text><text x=\"{}\" y=\"42\" text-anchor=\"middle\" class=\"runs-on\">{}</text>",
            x + WIDTH / 2,
            esc(stage),
            x + WIDTH / 2,
            esc(&runs_on)
        );
        if let Some((lx, ly, kexec)) = last {
            let (tx, ty) = (x, TOP + BOX / 2);
            let (marker, class, label) = if kexec {
                ("hop", "hop", "kexec")
            } else {
                ("arrow", "link", "")
            };
            let _ = writeln!(
                svg,
                "<path class=\"{class}\" d=\"M{lx},{ly} C{},{ly} {},{ty} {tx},{ty}\" marker-end=\"url(#{marker})\"/>",
                lx + GAP / 2,
                tx - GAP / 2
            );
            if kexec {
                let _ = writeln!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" class=\"hop-label\">{label}</text>",
                    (lx + tx) / 2,
                    (ly.min(ty)).saturating_sub(8).max(56)
                );
            }
        }
        for (row, step) in steps.iter().enumerate() {
            let y = TOP + row * ROW;
            let kexec = step.chain_step.step.definition.kexec.is_some();
            let class = match (step.built.is_some(), kexec) {
                (_, true) => "step kexec",
                (true, false) => "step built",
                (false, false) => "step unbuilt",
            };
            let _ = writeln!(
                svg,
                "<a href=\"{up}steps/{id}.html\"><rect class=\"{class}\" x=\"{x}\" y=\"{y}\" width=\"{WIDTH}\" height=\"{BOX}\" rx=\"5\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{id}</text></a>",
                x + WIDTH / 2,
                y + 16,
                id = esc(step.id())
            );
            if row > 0 {
                let _ = writeln!(
                    svg,
                    "<path class=\"link\" d=\"M{},{} V{y}\" marker-end=\"url(#arrow)\"/>",
                    x + WIDTH / 2,
                    y - ROW + BOX
                );
            }
            last = Some((x + WIDTH, y + BOX / 2, kexec));
        }
    }
    svg += "</svg>";
    svg
}
