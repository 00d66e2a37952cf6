from __future__ import annotations

from jobwire.dashboard._charts import HEIGHT, PAD, WIDTH, Chart, Series


def test_points_span_the_plot_and_scale_to_the_top_value() -> None:
    chart = Chart("t", (Series("a", (0, 5, 10)), Series("b", (2, 2, 2))))
    assert chart.top == 10
    first, middle, last = (
        tuple(map(float, p.split(","))) for p in chart.points(chart.series[0]).split()
    )
    assert first == (PAD, HEIGHT - PAD)
    assert middle == ((WIDTH) / 2, HEIGHT / 2)
    assert last == (WIDTH - PAD, PAD)


def test_an_empty_chart_has_a_top_of_one() -> None:
    chart = Chart("t", (Series("a", (0, 0)),))
    assert chart.top == 1
    assert chart.points(chart.series[0]).endswith(f",{HEIGHT - PAD:.1f}")
