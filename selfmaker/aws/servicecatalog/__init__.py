"""AWS Service Catalog, the subset SageMaker Projects use (``servicecatalog``: JSON 1.1
``AWS242ServiceCatalogService.*`` and Smithy RPC v2 CBOR).

:mod:`.catalog` holds portfolios, products and their provisioning artifacts (CloudFormation templates), the
associations and the searches; :mod:`.provisioning` the provisioned products (each a CloudFormation stack made
by SelfMaker's engine), their records and the controller that follows each stack to its end.
"""
