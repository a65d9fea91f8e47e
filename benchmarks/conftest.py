import shutil
import tempfile

import pytest

from fastsession.bench import filesystems

PLACES = filesystems()  # tmpfs (/dev/shm) and the default temp directory


@pytest.fixture(params=list(PLACES))
def place(request):
    """(name, a fresh folder) on tmpfs, then on the default temp directory."""
    folder = tempfile.mkdtemp(prefix="fastsession-benchmark-", dir=PLACES[request.param])
    yield request.param, folder
    shutil.rmtree(folder, ignore_errors=True)
