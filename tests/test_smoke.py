def test_kpis_empty_month_is_all_zero_and_null(api):
    response = api.get("/api/v1/kpis")
    assert response.status_code == 200
    body = response.json()
    assert body["calls"] == 0
    assert body["cost_usd"] == "0.000000"
    assert body["cost_per_successful_task_usd"] is None
    assert body["cache_hit_rate"] is None
