"""Serving a bundle: the search service (`service`) over its indexes (`index`), what the stored metrics say
across objectives (`analytics`), queries placed on the maps (`placement`), what a query's class and world are
(`query_info`), the objective lab (`lab`), checks on what users send (`inputs`, `uploads`), the JSON API
(`api`), the HTTP surface (`webserver`), the app's figures and values (`plots`, `views`), and whether the
repository can be hosted as a Space (`publish`)."""
