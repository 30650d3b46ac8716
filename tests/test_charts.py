"""The dashboard's SVG charts, from the per-day series the workers keep in Redis."""

from __future__ import annotations

from webhooks.charts import failures_chart, latency_chart, percentile, spend_chart


def day(name: str, spend: float = 0.0, edits: dict[str, float] | None = None,
        failures: dict[str, int] | None = None) -> dict[str, object]:
    return {"day": name, "spend": spend, "edits": edits or {}, "failures": failures or {}}


def test_spend_bars_are_red_over_the_budget_and_the_budget_is_drawn() -> None:
    svg = str(spend_chart([day("2026-11-27", 4.0), day("2026-11-28", 0.0), day("2026-11-29", 25.0)], 20.0))
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count('class="spend"') == 2  # a day without spend has no bar
    assert "2026-11-27: $4.0000" in svg and 'fill="#176b2c"' in svg  # under budget: green
    assert "2026-11-29: $25.0000" in svg and 'fill="#b3261e"' in svg  # over: red
    assert "daily budget $20.00" in svg


def test_latency_percentiles_come_from_the_cumulative_buckets() -> None:
    buckets = {"10": 1, "20": 2, "30": 6, "60": 9, "120": 10, "+Inf": 10, "sum": 330.0}
    assert percentile(buckets, 0.5) == 30 and percentile(buckets, 0.9) == 60
    assert percentile({}, 0.5) is None
    assert percentile({"240": 1, "+Inf": 2, "sum": 700.0}, 0.9) == 360  # slower than every bucket
    svg = str(latency_chart([day("2026-11-28"), day("2026-11-29", edits=buckets)]))
    assert svg.count('class="latency"') == 1 and "10 edit calls, median ≤ 30 s, 90% ≤ 60 s" in svg


def test_failures_are_ranked_and_escaped() -> None:
    svg = str(failures_chart([day("a", failures={"openai: moderation_blocked": 2, "<b>odd</b>": 1}),
                              day("b", failures={"openai: moderation_blocked": 3})]))
    assert svg.index("moderation_blocked") < svg.index("&lt;b&gt;odd")
    assert "openai: moderation_blocked: 5" in svg and "<b>" not in svg
    assert "No failures in the last 2 days" in str(failures_chart([day("a"), day("b")]))
