"""The report of one scale, from the files the notebooks left (never trains): `html` the self-contained
report.html with the study at a glance (`build`), `gallery` the tables and figures gathered (summary,
compute time, docs/results.md), `browser` the JupyterLab run browser. The claim statistics it shows live
in `study.results.compare` and are re-exported here."""
from ..results.compare import NOISE_BAND, TIE_POINTS, Claim, compare_views, glance, seed_spread, view_relation
from .browser import (
    RunBrowser,
)
from .gallery import (
    COMPUTE_NAME,
    README_END,
    README_START,
    STUDY_COLUMNS,
    SUMMARY_COLUMNS,
    TableFiles,
    compute_time_markdown,
    find_tables,
    gallery_markdown,
    readme_gallery_block,
    summary_markdown,
    summary_table,
    table_titles,
    tables_dir,
    update_readme,
    views_markdown,
)
from .html import (
    KEY_FIGURES,
    build,
    markdown_to_html,
    render_html,
)

__all__ = ['RunBrowser', 'STUDY_COLUMNS', 'SUMMARY_COLUMNS', 'TableFiles', 'tables_dir', 'find_tables',
           'summary_table', 'summary_markdown', 'views_markdown', 'COMPUTE_NAME', 'compute_time_markdown',
           'gallery_markdown', 'README_START', 'README_END', 'update_readme', 'readme_gallery_block', 'table_titles',
           'KEY_FIGURES', 'markdown_to_html', 'render_html', 'build', 'NOISE_BAND', 'TIE_POINTS', 'Claim',
           'compare_views', 'glance', 'seed_spread', 'view_relation']
