"""The paper's experiments as code: tables, curves and figures."""
