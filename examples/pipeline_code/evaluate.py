"""The pipeline's evaluation step: the model's mean squared error on the test set, as a JSON report.

It runs in the XGBoost image (which has xgboost and numpy); the pipeline's condition step reads the report.
"""

import json
import os
import tarfile

import numpy as np
import xgboost

with tarfile.open("/opt/ml/processing/model/model.tar.gz") as archive:
    archive.extractall("/tmp/model")
booster = xgboost.Booster()
booster.load_model("/tmp/model/xgboost-model")
data = np.loadtxt("/opt/ml/processing/test/test.csv", delimiter=",")
predictions = booster.predict(xgboost.DMatrix(data[:, 1:]))
mse = float(np.mean((predictions - data[:, 0]) ** 2))
os.makedirs("/opt/ml/processing/evaluation", exist_ok=True)
with open("/opt/ml/processing/evaluation/evaluation.json", "w") as out:
    json.dump({"regression_metrics": {"mse": {"value": mse}}}, out)
print("test mse", mse)
