"""The report's PNG: grams emitted per day against the counterfactual (every run started
when it was created). matplotlib is an optional dependency (extra ``report``)."""

from __future__ import annotations

from pathlib import Path

from carbonaware.errors import ConfigError
from carbonaware.plugin.report import Report, period

WIDTH_INCHES, HEIGHT_INCHES, DPI = 8.0, 4.0, 100  # 800 x 400 pixels


def plot_report(report: Report, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError(
            "--plot needs matplotlib: pip install 'carbon-aware-operator[report]'"
        ) from exc
    days = sorted(report.daily)
    emitted = [report.daily[day][0] for day in days]
    counterfactual = [report.daily[day][1] for day in days]
    figure, axes = plt.subplots(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
    try:
        positions = list(range(len(days)))
        axes.bar([p - 0.2 for p in positions], counterfactual, width=0.4,
                 label="counterfactual (started at creation)", color="#bbbbbb")  # fmt: skip
        axes.bar([p + 0.2 for p in positions], emitted, width=0.4, label="emitted",
                 color="#2a9d8f")  # fmt: skip
        axes.set_xticks(positions, [day.strftime("%m-%d") for day in days], rotation=45)
        axes.set_ylabel("gCO2e per day")
        total = report.total
        axes.set_title(
            f"Emitted vs counterfactual, {period(report)}\n"
            f"{total.runs} runs, {total.emitted_grams:.3g} g emitted, "
            f"{total.avoided_grams:.3g} g avoided",
            fontsize=9,
        )
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path, format="png")
    finally:
        plt.close(figure)
