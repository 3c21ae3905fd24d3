"""A simulated city of pensioners and its departments' deliveries, for tests and demos."""

from liveness.simulate.city import SimulationSummary, simulate_city
from liveness.simulate.population import annual_death_probability

__all__ = ["SimulationSummary", "annual_death_probability", "simulate_city"]
