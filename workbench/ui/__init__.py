"""The ipywidgets face of the workbench: `Workbench(spec)` shows Data, Variants, Run, Results and
Export tabs that build configs and call the same Python API as the CLI.

    from workbench.ui import Workbench
    wb = Workbench("experiments/quickstart.yaml")
    wb
"""

from workbench.ui.app import Workbench

__all__ = ["Workbench"]
