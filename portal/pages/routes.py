"""Portal pages. (Placeholder until the first page lands.)"""

from __future__ import annotations

from typing import Any

from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template.config import TemplateConfig

from portal.paths import TEMPLATES_DIR

page_handlers: list[Any] = []


def template_config() -> TemplateConfig[JinjaTemplateEngine]:
    return TemplateConfig(directory=TEMPLATES_DIR, engine=JinjaTemplateEngine)
