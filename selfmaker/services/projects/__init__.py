"""SageMaker Projects: the portfolio switch, projects (:mod:`.projects`) and the built-in templates
(:mod:`.templates`), provisioned through SelfMaker's Service Catalog and CloudFormation subsets."""
