"""mlcak_lib: the small shared library of the MLCAK course.

Each module holds one idea and names the notebook that introduces it. Importing the
package has no side effects (no downloads, no file writes, no thread settings).
"""

__version__ = "0.1.0"
