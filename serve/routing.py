"""Which of the app's models a request's `model` names: names and aliases, the default for none or an unknown name,
a 404 listing the served models when names are strict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rerank_core.image_intake import ImagePolicy

from .config import ServeAppConfig, ServedModel
from .errors import ApiError


@dataclass
class Route:
    """One served model as the gateway reaches it: its name, its deployment's handle, its clients' image policy."""

    served: ServedModel
    handle: Any  # the model's DeploymentHandle
    # A client's image string is a URL or base64, never a path on this machine.
    image_policy: ImagePolicy = field(init=False)
    takes_images: bool | None = None  # asked of a replica on first need

    def __post_init__(self) -> None:
        self.image_policy = ImagePolicy.of(self.served.model.images, allow_paths=False)

    @property
    def name(self) -> str:
        return self.served.name


class ModelRouter:
    """The app's models by every name and alias, the default first."""

    def __init__(self, cfg: ServeAppConfig, handles: dict[str, Any]):
        self.routes = [Route(served, handles[served.name]) for served in cfg.served()]
        self.strict = cfg.strict_model_names
        self._by_name = {name: route for route in self.routes for name in (route.name, *route.served.aliases)}

    @property
    def default(self) -> Route:
        return self.routes[0]

    def pick(self, requested: str | None) -> Route:
        """The route of the model a request names; none or an unknown name: the default, or with strict names a 404
        listing what is served."""
        route = self._by_name.get(requested) if requested else self.default
        if route is not None:
            return route
        if self.strict:
            raise ApiError(404, "model", f"{requested[:200]!r} is not served here; served: {', '.join(self._by_name)}")
        return self.default
