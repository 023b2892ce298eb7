from hoe.cli import main

main()
