"""Review regression: a bad WorkingDirectory is reported as such by the agent.

The agent's child reported only an errno, and the parent always wrote
"exec ARGV0: <strerror>", so a missing working directory read
"exec /bin/true: No such file or directory" (as if /bin/true were missing).
"""

from __future__ import annotations

import pytest

from aiohcs.host.vm.agent import AgentError

from .test_agent_local import Harness, asan_agent, harness  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(120)


async def test_missing_working_directory_names_it(harness: Harness) -> None:  # noqa: F811
    with pytest.raises(AgentError) as e:
        await harness.client.create_process(
            {"CommandArgs": ["/bin/true"], "WorkingDirectory": "/no/such/dir"}
        )
    assert e.value.errno == 2
    assert "/no/such/dir" in e.value.message and "exec" not in e.value.message, e.value.message

    with pytest.raises(AgentError) as e:
        await harness.client.create_process({"CommandArgs": ["/no/such/exe"]})
    assert e.value.errno == 2 and "exec /no/such/exe" in e.value.message, e.value.message

    p = await harness.client.create_process({"CommandArgs": ["/bin/true"], "WorkingDirectory": "/"})
    assert (await p.exited).code == 0
