"""The security levels, in a module of their own with no dependency, so that ``config.py`` and the CLI
take the names and the default from here without loading numpy (the lock controller reads
``config.py`` and runs without it). The maths that turns a level into a tau is ``match.identify_point``.

Each level is a false-accept target per visit: the chance that one visit of a stranger ends in
``granted``. The default is what a door should ship with (docs/EVALUATION.md says how it was chosen).
"""

from __future__ import annotations

from typing import Literal

SecurityLevel = Literal["convenient", "balanced", "secure", "strict"]
SECURITY_LEVELS: dict[str, float] = {"convenient": 1e-2, "balanced": 1e-3, "secure": 1e-4, "strict": 1e-5}
DEFAULT_SECURITY: SecurityLevel = "strict"
