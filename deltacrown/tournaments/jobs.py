"""Tournament jobs (thin: each calls a service)."""
from ..queue import QUEUE_DEFAULT, background_job


@background_job(queue=QUEUE_DEFAULT)
def wrap_up_tournament(tournament_id: int) -> dict:
    """Rankings, then payouts, then mark wrapped up, for one completed tournament."""
    raise NotImplementedError("built by the automation part (issue 5)")
