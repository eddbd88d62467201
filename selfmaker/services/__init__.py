"""One module per family of SageMaker operations. Importing this package registers nothing:
selfmaker/server/operations.py's ``SERVICE_MODULES`` names every module load_all imports."""
