import warnings
from pathlib import Path

import pytest

from confflow.chem import Molecule, StereoWarning

DIVERSE = Path(__file__).resolve().parents[2] / "datasets" / "molecules" / "diverse.smi"


def diverse_smiles() -> list[tuple[str, str]]:
    """``(smiles, name)`` of the diverse test set, in file order."""
    out = []
    for line in DIVERSE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            smiles, name = line.split()
            out.append((smiles, name))
    return out


def molecule(smiles: str) -> Molecule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StereoWarning)
        return Molecule.from_smiles(smiles)


@pytest.fixture(scope="session")
def diverse_conformers():
    """``[(name, molecule, x [1, N, 3] nm)]`` for every molecule of the diverse set."""
    return [
        (name, mol, mol.embed(1, seed=0, num_threads=1))
        for smiles, name in diverse_smiles()
        for mol in [molecule(smiles)]
    ]
