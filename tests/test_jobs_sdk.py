"""Jobs through the real SageMaker SDK: v2 SKLearnProcessor and SKLearn estimator, v3 ModelTrainer; logs stream."""

from __future__ import annotations

from support.jobs import SKLEARN_IMAGE
from support.sdk import run_captured


def test_v2_sklearn_processor_runs_a_script(sdk_v2, server, tmp_path):
    script = tmp_path / "preprocess.py"
    script.write_text(
        "import os, sys\nprint('preprocessing with', sys.argv[1:], flush=True)\n"
        "os.makedirs('/opt/ml/processing/output', exist_ok=True)\n"
        "open('/opt/ml/processing/output/result.csv', 'w').write('a,b\\n1,2\\n')\n"
    )
    result, output = run_captured(
        sdk_v2,
        server,
        f"""
        import json, boto3
        from sagemaker.sklearn.processing import SKLearnProcessor
        from sagemaker.processing import ProcessingOutput
        processor = SKLearnProcessor(framework_version="1.2-1", role="arn:aws:iam::123456789012:role/SageMakerRole",
                                     instance_type="ml.m5.large", instance_count=1)
        processor.run(code={str(script)!r}, arguments=["--split", "0.2"], logs=True, wait=True,
                      outputs=[ProcessingOutput(source="/opt/ml/processing/output",
                                                destination="s3://selfmaker-sdk-tests/processed")])
        job = processor.latest_job.describe()
        body = boto3.client("s3").get_object(Bucket="selfmaker-sdk-tests", Key="processed/result.csv")["Body"].read()
        print("RESULT " + json.dumps({{"status": job["ProcessingJobStatus"], "image": job["AppSpecification"]["ImageUri"],
                                      "body": body.decode()}}))
    """,
    )
    assert result["status"] == "Completed"
    assert result["image"].endswith("/sagemaker-scikit-learn:1.2-1-cpu-py3")
    assert result["body"] == "a,b\n1,2\n"
    assert "preprocessing with ['--split', '0.2']" in output


def test_v2_sklearn_estimator_script_mode_with_requirements(sdk_v2, server, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    (source / "requirements.txt").write_text("tabulate\n")
    (source / "train.py").write_text(
        "import argparse, os, pickle, tabulate\n"
        "from sklearn.linear_model import LinearRegression\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('--fit-intercept', type=int)\n"
        "args = parser.parse_args()\n"
        "rows = [list(map(float, l.split(','))) for l in open(os.path.join(os.environ['SM_CHANNEL_TRAIN'], 'train.csv'))]\n"
        "model = LinearRegression(fit_intercept=bool(args.fit_intercept)).fit([r[1:] for r in rows], [r[0] for r in rows])\n"
        "print(tabulate.tabulate([['coef', round(model.coef_[0], 3)]]), flush=True)\n"
        "pickle.dump(model, open(os.path.join(os.environ['SM_MODEL_DIR'], 'model.pkl'), 'wb'))\n"
    )
    result, output = run_captured(
        sdk_v2,
        server,
        f"""
        import json, boto3
        from sagemaker.sklearn import SKLearn
        s3 = boto3.client("s3")
        s3.put_object(Bucket="selfmaker-sdk-tests", Key="v2-train/train.csv", Body=b"2,1\\n4,2\\n6,3\\n")
        estimator = SKLearn(entry_point="train.py", source_dir={str(source)!r},  # uploaded by the SDK
                            framework_version="1.2-1",
                            instance_type="ml.m5.large", role="arn:aws:iam::123456789012:role/SageMakerRole",
                            hyperparameters={{"fit-intercept": 0}})
        estimator.fit({{"train": "s3://selfmaker-sdk-tests/v2-train"}}, logs=True)
        job = estimator.latest_training_job.describe()
        print("RESULT " + json.dumps({{"status": job["TrainingJobStatus"], "model": estimator.model_data}}))
    """,
    )
    assert result["status"] == "Completed"
    assert result["model"].endswith("/output/model.tar.gz")
    assert "coef  2" in output  # the script's own output, streamed by fit(logs=True)


def test_v3_model_trainer_with_source_code(sdk_v3, server, tmp_path):
    source = tmp_path / "v3src"
    source.mkdir()
    (source / "train.py").write_text(
        "import os, sys\n"
        "print('v3 training with', sys.argv[1:], 'channels', os.listdir('/opt/ml/input/data'), flush=True)\n"
        "open(os.path.join(os.environ['SM_MODEL_DIR'], 'weights.txt'), 'w').write('42')\n"
    )
    result, output = run_captured(
        sdk_v3,
        server,
        f"""
        import json, logging, boto3
        logging.basicConfig(level=logging.INFO)  # v3 logs through `logging`, configured by the application
        from sagemaker.train.model_trainer import ModelTrainer
        from sagemaker.train.configs import Compute, InputData, SourceCode
        boto3.client("s3").put_object(Bucket="selfmaker-sdk-tests", Key="v3-train/data.csv", Body=b"1,2\\n")
        trainer = ModelTrainer(training_image={SKLEARN_IMAGE!r}, base_job_name="selfmaker-v3",
                               role="arn:aws:iam::123456789012:role/SageMakerRole",
                               source_code=SourceCode(source_dir={str(source)!r}, entry_script="train.py"),
                               compute=Compute(instance_type="ml.m5.large", instance_count=1),
                               hyperparameters={{"epochs": 2}})
        trainer.train(input_data_config=[InputData(channel_name="train",
                                                   data_source="s3://selfmaker-sdk-tests/v3-train")],
                      wait=True, logs=True)
        job = trainer._latest_training_job
        job.refresh()
        print("RESULT " + json.dumps({{"status": job.training_job_status,
                                      "model": job.model_artifacts.s3_model_artifacts}}))
    """,
    )
    assert result["status"] == "Completed", output[-4000:]
    assert result["model"].endswith("/output/model.tar.gz")
    assert "v3 training with ['--epochs', '2']" in output
