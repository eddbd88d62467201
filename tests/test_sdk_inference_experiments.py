"""A shadow test through SageMaker SDK v3's resource class (sagemaker.core.resources.InferenceExperiment).

SDK v2 has no shadow-test API of its own (its sagemaker_core dependency carries the same generated class);
v3's is the one driven here: create, wait for Running, stop with Promote, wait for Completed. Its generated
stop() cannot send ModelVariantActions (its model has no such attribute), so the stop goes through its client.
"""

from __future__ import annotations

from support.endpoints import Models, deploy, variant


def test_v3_inference_experiment_promotes(sdk_v3, server, sm, tmp_path):
    models = Models(server, tmp_path)
    base, cand = models.versioned("sdkie-base"), models.versioned("sdkie-cand")
    assert deploy(sm, "sdkie-ep", [variant(base, "Prod")])["EndpointStatus"] == "InService"
    result = sdk_v3.run(
        server,
        f"""
    import json
    from sagemaker.core.resources import Endpoint, InferenceExperiment
    from sagemaker.core.shapes import (ModelInfrastructureConfig, ModelVariantConfig, RealTimeInferenceConfig,
                                       ShadowModeConfig, ShadowModelVariantConfig)
    def config(model, name):
        return ModelVariantConfig(model_name=model, variant_name=name, infrastructure_config=ModelInfrastructureConfig(
            infrastructure_type="RealTimeInference",
            real_time_inference_config=RealTimeInferenceConfig(instance_type="ml.m5.large", instance_count=1)))
    experiment = InferenceExperiment.create(
        name="sdkie", type="ShadowMode", role_arn="arn:aws:iam::123456789012:role/SageMakerRole",
        endpoint_name="sdkie-ep", model_variants=[config("{base}", "Prod"), config("{cand}", "Shadow")],
        shadow_mode_config=ShadowModeConfig(source_model_variant_name="Prod", shadow_model_variants=[
            ShadowModelVariantConfig(shadow_model_variant_name="Shadow", sampling_percentage=100)]))
    experiment.wait_for_status("Running", poll=1, timeout=300)
    # The SDK's generated stop() sends attributes (model_variant_actions, ...) its pydantic model does not
    # declare, so they cannot be set: Stop goes through the SDK's own boto3 client.
    experiment._get_client().stop_inference_experiment(
        Name="sdkie", ModelVariantActions={{"Prod": "Remove", "Shadow": "Promote"}}, DesiredState="Completed")
    experiment.wait_for_status("Completed", poll=1, timeout=300)
    endpoint = Endpoint.get(endpoint_name="sdkie-ep")
    endpoint.wait_for_status("InService", poll=1, timeout=300)
    answer = endpoint.invoke(body="hi", content_type="text/plain")
    body = answer.body.read() if hasattr(answer.body, "read") else answer.body
    print(json.dumps({{"status": experiment.status, "body": body.decode(),
                      "variant": answer.invoked_production_variant}}))
    """,
    )
    assert result == {"status": "Completed", "body": f"{cand}:hi", "variant": "Shadow"}
    sm.delete_endpoint(EndpointName="sdkie-ep")
