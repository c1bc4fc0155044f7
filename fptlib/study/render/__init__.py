"""Rendering: Markdown tables (`markdown`: the one table renderer), matplotlib figures (`plots`) and the
helpers of the JupyterLab widgets (`widgets`)."""
