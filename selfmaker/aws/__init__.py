"""The small subsets of other AWS services that the SDK and SageMaker jobs need."""
