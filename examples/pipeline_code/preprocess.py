"""The pipeline's processing step: split the raw CSV into train and test sets (runs inside the job)."""

import os

rows = open("/opt/ml/processing/input/data.csv").read().splitlines()
cut = len(rows) * 3 // 4
for name, part in (("train", rows[:cut]), ("test", rows[cut:])):
    os.makedirs(f"/opt/ml/processing/{name}", exist_ok=True)
    with open(f"/opt/ml/processing/{name}/{name}.csv", "w") as out:
        out.write("\n".join(part) + "\n")
print(f"split {len(rows)} rows: {cut} to train, {len(rows) - cut} to test")
