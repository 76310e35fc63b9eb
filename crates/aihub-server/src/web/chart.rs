//! Server-rendered SVG bar charts: one bar per UTC day, stacked by group (the largest groups
//! each in a colour of their own, the rest together as "other"), with axis labels and a
//! `<title>` on every bar segment so hovering shows the value. Drawn from `templates/chart.html`
//! with presentation attributes and classes only — the CSP allows no inline style.
//!
//! Coordinates are integers in the SVG's own units; values are integers (counts, tokens,
//! money in micro-units), scaled with integer arithmetic.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use chrono::NaiveDate;

/// Drawing width, height and margins, in SVG units (the SVG scales to its container).
const WIDTH: i64 = 960;
const HEIGHT: i64 = 240;
const LEFT: i64 = 88;
const RIGHT: i64 = 8;
const TOP: i64 = 10;
const BOTTOM: i64 = 28;
/// At most this many day labels under the axis.
const MAX_X_LABELS: i64 = 8;
/// Colour classes of the named series, largest first; `other` is the remainder's.
const SERIES_CLASSES: [&str; 5] = ["s0", "s1", "s2", "s3", "s4"];

/// One bar segment: a rectangle with its hover text.
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub width: i64,
    pub height: i64,
    pub class: &'static str,
    pub title: String,
}

/// A label on an axis, at `pos` (y for the value axis, x for the day axis).
pub struct Tick {
    pub pos: i64,
    pub label: String,
}

/// One entry of the legend.
pub struct LegendItem {
    pub class: &'static str,
    pub label: String,
}

/// A chart ready for `chart.html`.
pub struct Chart {
    /// The SVG's element id (`chart-requests`, …).
    pub id: String,
    pub title: String,
    pub width: i64,
    pub height: i64,
    /// Where the plot area starts and ends (for the axis lines).
    pub left: i64,
    pub right: i64,
    pub baseline: i64,
    pub bars: Vec<Bar>,
    pub y_ticks: Vec<Tick>,
    pub x_ticks: Vec<Tick>,
    pub legend: Vec<LegendItem>,
}

/// What a chart draws: the days of the range, the values per day and group, how groups are
/// named and values written.
pub struct Spec<'a, K> {
    pub id: String,
    pub title: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// `(day, group, value)`; a day and group may repeat (their values add up).
    pub points: Vec<(NaiveDate, K, i64)>,
    /// How many groups get a series of their own; the rest are summed as `other`.
    pub top: usize,
    pub other: &'a str,
    pub label: &'a dyn Fn(&K) -> String,
    pub format: &'a dyn Fn(i64) -> String,
}

/// The smallest "round" number (1, 2 or 5 × 10ⁿ) at or above `v`: the top of the value axis.
#[must_use]
pub fn nice_ceiling(v: i64) -> i64 {
    if v <= 1 {
        return 1;
    }
    let mut scale = 1i64;
    loop {
        for m in [1, 2, 5] {
            let candidate = scale.saturating_mul(m);
            if candidate >= v {
                return candidate;
            }
        }
        if scale > i64::MAX / 10 {
            return i64::MAX;
        }
        scale *= 10;
    }
}

/// `v * num / den` without overflow, for den > 0.
fn scale(v: i64, num: i64, den: i64) -> i64 {
    let r = i128::from(v) * i128::from(num) / i128::from(den.max(1));
    i64::try_from(r).unwrap_or(i64::MAX)
}

/// Lays out a stacked bar chart.
#[must_use]
pub fn stacked<K: Clone + Eq + Hash + Ord>(spec: Spec<'_, K>) -> Chart {
    let days = (spec.to - spec.from).num_days().max(0) + 1;
    // Groups ranked by their total over the range, largest first (ties by group order).
    let mut group_totals: BTreeMap<K, i64> = BTreeMap::new();
    for (_, g, v) in &spec.points {
        *group_totals.entry(g.clone()).or_default() += v;
    }
    let mut ranked: Vec<(K, i64)> = group_totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let top = spec.top.min(SERIES_CLASSES.len());
    let series: HashMap<K, usize> = ranked
        .iter()
        .take(top)
        .enumerate()
        .map(|(i, (g, _))| (g.clone(), i))
        .collect();
    let has_other = ranked.len() > top;
    let slots = series.len() + usize::from(has_other);
    // values[day][slot]
    let mut values: Vec<Vec<i64>> = vec![vec![0; slots]; usize::try_from(days).unwrap_or(0)];
    for (day, g, v) in &spec.points {
        let d = (*day - spec.from).num_days();
        let slot = series.get(g).copied().unwrap_or(series.len());
        if let Some(cell) = usize::try_from(d)
            .ok()
            .and_then(|d| values.get_mut(d))
            .and_then(|row| row.get_mut(slot))
        {
            *cell += v;
        }
    }
    let names: Vec<String> = ranked
        .iter()
        .take(top)
        .map(|(g, _)| (spec.label)(g))
        .chain(has_other.then(|| spec.other.to_owned()))
        .collect();
    let classes: Vec<&'static str> = SERIES_CLASSES
        .iter()
        .copied()
        .take(series.len())
        .chain(has_other.then_some("other"))
        .collect();

    let max = values
        .iter()
        .map(|row| row.iter().sum::<i64>())
        .max()
        .unwrap_or(0);
    let ceiling = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let baseline = HEIGHT - BOTTOM;
    let mut bars = Vec::new();
    for (i, row) in (0i64..).zip(&values) {
        let x0 = LEFT + scale(i, plot_w, days);
        let x1 = LEFT + scale(i + 1, plot_w, days);
        // A gap between bars when there is room for one.
        let width = if x1 - x0 > 3 {
            x1 - x0 - 1
        } else {
            (x1 - x0).max(1)
        };
        let day = spec.from + chrono::Days::new(u64::try_from(i).unwrap_or(0));
        let mut stacked_value = 0i64;
        for ((v, class), name) in row.iter().zip(&classes).zip(&names) {
            if *v <= 0 {
                continue;
            }
            let bottom = baseline - scale(stacked_value, plot_h, ceiling);
            stacked_value += v;
            let top_y = baseline - scale(stacked_value, plot_h, ceiling);
            bars.push(Bar {
                x: x0,
                y: top_y,
                width,
                // A non-zero value stays visible.
                height: (bottom - top_y).max(1),
                class,
                title: format!("{day} · {name}: {}", (spec.format)(*v)),
            });
        }
    }
    // As many equal steps (up to 5) as divide the round ceiling exactly, so that every label
    // is a whole value: 0–1 has one step, 0–2 two, 0–10 five.
    let steps = [5, 4, 2, 1]
        .into_iter()
        .find(|n| ceiling % n == 0)
        .unwrap_or(1);
    let y_ticks = (0..=steps)
        .map(|k| Tick {
            pos: baseline - scale(k, plot_h, steps),
            label: (spec.format)(scale(ceiling, k, steps)),
        })
        .collect();
    let every = (days + MAX_X_LABELS - 1) / MAX_X_LABELS;
    let x_ticks = (0..days)
        .step_by(usize::try_from(every.max(1)).unwrap_or(1))
        .map(|i| {
            let day = spec.from + chrono::Days::new(u64::try_from(i).unwrap_or(0));
            Tick {
                pos: LEFT + scale(i, plot_w, days) + scale(1, plot_w, 2 * days),
                label: day.format("%m-%d").to_string(),
            }
        })
        .collect();
    let legend = classes
        .iter()
        .zip(names)
        .map(|(class, label)| LegendItem { class, label })
        .collect();
    Chart {
        id: spec.id,
        title: spec.title,
        width: WIDTH,
        height: HEIGHT,
        left: LEFT,
        right: WIDTH - RIGHT,
        baseline,
        bars,
        y_ticks,
        x_ticks,
        legend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, n).unwrap()
    }

    #[test]
    fn ceilings_are_round() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(1), 1);
        assert_eq!(nice_ceiling(3), 5);
        assert_eq!(nice_ceiling(10), 10);
        assert_eq!(nice_ceiling(11), 20);
        assert_eq!(nice_ceiling(4_999), 5_000);
        assert_eq!(nice_ceiling(5_001), 10_000);
        assert_eq!(nice_ceiling(i64::MAX), i64::MAX);
    }

    #[test]
    fn bars_stack_top_groups_and_sum_the_rest_as_other() {
        let label = |g: &&str| g.to_uppercase();
        let format = |v: i64| v.to_string();
        let chart = stacked(Spec {
            id: "chart-requests".into(),
            title: "Requests".into(),
            from: d(1),
            to: d(3),
            points: vec![
                (d(1), "a", 6),
                (d(1), "b", 2),
                (d(1), "c", 1),
                (d(3), "a", 4),
                (d(3), "c", 1),
            ],
            top: 2,
            other: "other",
            label: &label,
            format: &format,
        });
        let legend: Vec<(&str, &str)> = chart
            .legend
            .iter()
            .map(|l| (l.class, l.label.as_str()))
            .collect();
        // "a" (10) then "c" (2) and "b" (2) tie: by group order, "b" first.
        assert_eq!(legend, [("s0", "A"), ("s1", "B"), ("other", "other")]);
        let titles: Vec<&str> = chart.bars.iter().map(|b| b.title.as_str()).collect();
        assert_eq!(
            titles,
            [
                "2026-11-01 · A: 6",
                "2026-11-01 · B: 2",
                "2026-11-01 · other: 1",
                "2026-11-03 · A: 4",
                "2026-11-03 · other: 1",
            ]
        );
        // Day 1 totals 9 under a ceiling of 10: the stack reaches 9/10 of the plot height.
        let plot_h = HEIGHT - TOP - BOTTOM;
        let day1: i64 = chart.bars.iter().take(3).map(|b| b.height).sum();
        assert!((day1 - plot_h * 9 / 10).abs() <= 2, "{day1}");
        assert!(
            chart
                .bars
                .iter()
                .all(|b| b.y >= TOP && b.y + b.height <= chart.baseline)
        );
        // Bars of one day share x; the third day is right of the first.
        assert_eq!(chart.bars[0].x, chart.bars[2].x);
        assert!(chart.bars[3].x > chart.bars[0].x);
        let y: Vec<&str> = chart.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(y, ["0", "2", "4", "6", "8", "10"]);
        assert_eq!(chart.x_ticks.len(), 3);
        assert_eq!(chart.x_ticks[0].label, "11-01");
    }

    #[test]
    fn an_empty_or_long_range_still_draws() {
        let label = |g: &String| g.clone();
        let format = |v: i64| v.to_string();
        let chart = stacked(Spec {
            id: "c".into(),
            title: "t".into(),
            from: NaiveDate::from_ymd_opt(2025, 11, 26).unwrap(),
            to: d(25),
            points: Vec::new(),
            top: 5,
            other: "other",
            label: &label,
            format: &format,
        });
        assert!(chart.bars.is_empty());
        assert!(chart.legend.is_empty());
        assert!(chart.x_ticks.len() <= 8);
        let y: Vec<&str> = chart.y_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(y, ["0", "1"], "no repeated labels on a small axis");
    }
}
