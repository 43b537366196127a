"""Data shipped with the package: real grid-intensity traces (see ``traces/README.md``).

GB 2024: Carbon Intensity API, NESO (CC BY 4.0). DE, US-MIDA-PJM and IN-WE 2023: Electricity
Maps (ODbL).
"""

from __future__ import annotations

from pathlib import Path

TRACES = Path(__file__).parent / "traces"
GB_2024 = TRACES / "gb_neso_national_2024_30min_forecast_actual.csv"
DE_2023 = TRACES / "electricitymaps_DE_2023_hourly.csv"
PJM_2023 = TRACES / "electricitymaps_US-MIDA-PJM_2023_hourly.csv"
IN_WE_2023 = TRACES / "electricitymaps_IN-WE_2023_hourly.csv"
