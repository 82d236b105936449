// Lists the operations this node serves, from the API it serves.
async function loadOperations() {
  const response = await fetch('/api/v1/operations');
  const body = await response.json();
  document.getElementById('node').textContent = body.metadata.node;
  const tbody = document.querySelector('#operations tbody');
  tbody.replaceChildren(...body.data.operations.map((op) => {
    const row = document.createElement('tr');
    const available = op.available ? 'yes' : `no: ${op.unavailable_reason}`;
    for (const text of [op.method, op.path, op.summary, available]) {
      const cell = document.createElement('td');
      cell.textContent = text;
      row.appendChild(cell);
    }
    if (!op.available) row.lastChild.className = 'unavailable';
    return row;
  }));
}
loadOperations();
