"""The papers' tables as one command (``robustune reproduce``): declarations, plans, launchers."""

from robustune.reproduce.plan import Plan, PlanCell, describe, make_plan
from robustune.reproduce.tables import TABLES, get_table

__all__ = ["TABLES", "Plan", "PlanCell", "describe", "get_table", "make_plan"]
