"""Where the shipped bundles are: the default of SER_MODELS_DIR and the folder names in it.

The repository's models/ is found from the code's own location, so a checkout or an editable
install finds it from any working directory. A wheel installed elsewhere (the Docker image, a
cluster's workers) names its folder with SER_MODELS_DIR. Dependency-free: `ser --help` shows it.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
STUDENT = "student"   # float32: no int8 copy kept its labels on >= 97 % of held-out clips (docs/performance.md)
TEACHER = "teacher"
NO_TEACHER = "none"        # SER_TEACHER_BUNDLE=none, --teacher none: the student alone, asked for

MODELS_HELP = (f"Default bundles: {STUDENT}/ and {TEACHER}/ (when it exists) in SER_MODELS_DIR, which defaults "
               f"to the models/ shipped with the code ({MODELS_DIR}). A bundle named by a flag or SER_* variable "
               f"must exist; --teacher {NO_TEACHER} (SER_TEACHER_BUNDLE={NO_TEACHER}) serves the student alone.")
