from producers.process import main

main()
