"""The daily-volume report: sales per day and amount category, with each day's reconciliation
status, as a table and a PNG chart (`ewallet-etl report`, and Dagster's `daily_volume_report`).

The figures come from `v_fact_sales` (current rows, deleted ones hidden) and the MySQL
reconciliation (`reconcile.compare`); a day that differs from the source is marked on the
chart in red, so a wrong number is never shown as if it were right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from ewallet_etl.config import Settings
from ewallet_etl.core.transform import AMOUNT_CATEGORY_BOUNDS, TOP_CATEGORY
from ewallet_etl.warehouse import open_warehouse

CATEGORIES = [label for _, label in AMOUNT_CATEGORY_BOUNDS] + [TOP_CATEGORY]
VOLUME_SQL = """
SELECT toString(transaction_date), amount_category, count(), toString(sum(amount))
FROM analytics_dw.v_fact_sales
WHERE status = 'SUCCESS'
GROUP BY transaction_date, amount_category
ORDER BY transaction_date, amount_category
"""


@dataclass
class DailyVolume:
    days: list[str] = field(default_factory=list)
    sales: dict[tuple[str, str], int] = field(default_factory=dict)  # (day, category) -> count
    amount: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    differing_days: list[str] = field(default_factory=list)  # reconciliation mismatches

    def rows(self) -> list[tuple[str, str, int, Decimal, str]]:
        return [(day, cat, self.sales.get((day, cat), 0),
                 self.amount.get((day, cat), Decimal("0.00")),
                 "differs" if day in self.differing_days else "ok")
                for day in self.days for cat in CATEGORIES if (day, cat) in self.sales]


def daily_volume(settings: Settings, reconcile: bool = True) -> DailyVolume:
    wh = open_warehouse(settings)
    try:
        rows = wh.query(VOLUME_SQL)
    finally:
        wh.close()
    report = DailyVolume()
    for day, category, n, total in rows:
        if day not in report.days:
            report.days.append(day)
        report.sales[(day, category)] = int(n)
        report.amount[(day, category)] = Decimal(total).quantize(Decimal("0.01"))
    if reconcile:
        from ewallet_etl.pipelines.reconcile import compare

        report.differing_days = sorted(str(d.day) for d in compare(settings).mismatches)
    return report


def write_chart(report: DailyVolume, path: Path) -> Path:
    """A stacked bar chart of the sales amount per day and category; differing days in red."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(report.days) + 2), 4.5))
    bottom = [0.0] * len(report.days)
    for category in CATEGORIES:
        heights = [float(report.amount.get((day, category), 0)) for day in report.days]
        ax.bar(report.days, heights, bottom=bottom, label=category)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    for i, day in enumerate(report.days):
        if day in report.differing_days:
            ax.annotate("differs", (i, bottom[i]), color="red", ha="center", va="bottom")
    ax.set_title("Sales per day and amount category (IDR)")
    ax.set_ylabel("amount (IDR)")
    ax.legend(title="category")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
