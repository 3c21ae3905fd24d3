"""Review tasks: face verifications, home visits and death reviews."""

from liveness.review.service import RoutingResult, open_death_reviews, route_reviews

__all__ = ["RoutingResult", "open_death_reviews", "route_reviews"]
