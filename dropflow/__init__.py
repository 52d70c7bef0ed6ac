"""dropflow: a data-activated dataflow engine for Python, in the family of DALiuGE."""

__version__ = "0.1.0"
__all__ = ["__version__"]
