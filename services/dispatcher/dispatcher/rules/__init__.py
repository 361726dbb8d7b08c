"""Template rules: which Siteti template an event gets, and with which variables.

`model`: the rule file's shape and reading it; `engine`: choosing a rule and filling its
template (what the pipeline runs); `checker`: static checks for `bridge templates check`.
The names the dispatcher runs with are exported here.
"""

from .engine import Choice, MissingVariable, NoRuleMatched, choose
from .model import RuleSet, configured_rules_file, load_rules

__all__ = [
    "Choice",
    "MissingVariable",
    "NoRuleMatched",
    "RuleSet",
    "choose",
    "configured_rules_file",
    "load_rules",
]
