"""Web pages for grid workers, supervisors and inspectors, served by the API's app."""
