"""Serving a bundle: the search service (`service`) and its parts (`encoder`, `catalog`, `ranking`, `index`), the
request and answer shapes (`schema`), what the stored metrics say across objectives (`analytics`), queries placed
on the maps (`placement`), what a query's class and world are (`query_info`), the objective lab (`lab`), checks on
what users send (`inputs`, `uploads`), which bundles a process serves (`served`), the JSON API (`api`), the HTTP
surface (`webserver`), and whether the repository can be hosted as a Space (`publish`). The page is `cmr_demo.ui`."""
